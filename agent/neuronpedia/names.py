"""How our catalog's names become Neuronpedia's: model and source ids, source sets, the explanation, explanation
model and score type names, and stable row ids.

Neuronpedia names models its own way (`gpt2-small` for `openai-community/gpt2`), and a source id is
`{layer}-{set name}` (`6-res-jb`), except raw neurons: source `{layer}` in the `neurons` set. Its delphi
score types are `eleuther_recall` (detection), `eleuther_fuzz` (fuzzing) and `eleuther_embedding`; our
other scorers and our explainers get types of their own, which an export writes rows for.
"""

import hashlib
import re
from pathlib import Path

from tools.errors import InterpError

DEFAULT_CREATOR_ID = "interp-agent"
"""The Neuronpedia `User.id` an export names as creator and author unless --creator-id says otherwise: an
admin creates this user once (or passes an existing user's id)."""
KNOWN_MODELS = {"openai-community/gpt2": "gpt2-small", "gpt2": "gpt2-small", "gemma-3-270m": "gemma-3-270m",
                "google/gemma-3-270m": "gemma-3-270m", "google/gemma-2-2b": "gemma-2-2b",
                "meta-llama/Llama-3.1-8B": "llama3.1-8b", "Qwen/Qwen2.5-7B-Instruct": "qwen2.5-7b-it"}
SCORE_TYPES = {"detection": "eleuther_recall", "fuzzing": "eleuther_fuzz", "embedding": "eleuther_embedding",
               "simulation": "interp-agent_simulation", "intervention": "interp-agent_intervention",
               "intruder": "interp-agent_intruder"}
"""Our scorer -> Neuronpedia's ExplanationScoreType.name; the eleuther_* rows exist on Neuronpedia already."""
NEURONPEDIA_SCORE_TYPES = {"eleuther_recall", "eleuther_fuzz", "eleuther_embedding"}
PRIMARY_METRIC = {"detection": "balanced_accuracy", "fuzzing": "balanced_accuracy", "embedding": "auroc",
                  "simulation": "pearson", "intervention": "auroc", "intruder": "accuracy"}
"""Which of a scorer's metrics is the ExplanationScore's value; all of them go in its jsonDetails."""
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_") or "model"


def np_model_id(model_name: str, override: str | None) -> str:
    """Neuronpedia's id for the model: --np-model-id, a known model's, else its name made an id."""
    chosen = override or KNOWN_MODELS.get(model_name) or slug(Path(model_name).name)
    if not NAME.fullmatch(chosen):
        raise InterpError(f"Neuronpedia model id '{chosen}' must be lower-case letters, digits, '-' or '_' "
                          "(pass --np-model-id)")
    return chosen


def np_source(feature_set: dict, override: str | None) -> tuple[str, str]:
    """(source id, source set name): `{layer}-{set}`, or `{layer}` in the `neurons` set for raw neurons."""
    if override:
        match = re.fullmatch(r"(\d+)(?:-([a-z0-9][a-z0-9_-]*))?", override)
        if not match:
            raise InterpError(f"Neuronpedia source id '{override}' must be '{{layer}}-{{set}}' (like 6-res-jb) "
                              "or '{layer}' for raw neurons")
        return override, match.group(2) or "neurons"
    hook = feature_set["hook"]
    match = re.fullmatch(r"([a-z_]+)\.(\d+)", hook)
    if not match:
        raise InterpError(f"cannot name a Neuronpedia source for hook '{hook}'; pass --np-source-id")
    site, layer = match.groups()
    if feature_set["kind"] == "neuron":
        return layer, "neurons"
    rest = feature_set["feature_set_id"].removeprefix(hook).lstrip("-")
    name = slug(f"{site}-{rest}").replace("_", "-")
    return f"{layer}-{name}", name


IMPORTED = "neuronpedia:"
"""The explainer prefix of explanations brought in by `interp import neuronpedia`..."""
IMPORTED_ID = "np:"
"""...and of their explanation ids, before Neuronpedia's own id."""


def explanation_type(explainer: str) -> str:
    """Our explainer's ExplanationType name; an imported explanation keeps the type it came with."""
    return explainer.removeprefix(IMPORTED) if explainer.startswith(IMPORTED) else f"interp-agent_{slug(explainer)}"


def llm_type_name(llm: str, explainer: str = "") -> str | None:
    """An explainer's or scorer's LLM as an ExplanationModelType / ExplanationScoreModel name: the model
    without the backend prefix or the endpoint ('openai:gpt-4o@https://...' -> 'gpt-4o'), or, for an imported
    explanation, Neuronpedia's own name as it came; None without one."""
    if not llm:
        return None
    if explainer.startswith(IMPORTED):
        return llm
    model = llm.split("@", 1)[0].split(":", 1)[-1]
    return slug(Path(model).name)


def stable_id(*parts: object) -> str:
    """A row id derived from ours, the same on every export (re-imports are `ON CONFLICT DO NOTHING`)."""
    return "ia" + hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:23]


def explanation_row_id(explanation_id: str) -> str:
    """The Explanation.id an explanation of ours gets: an imported one keeps Neuronpedia's own."""
    return explanation_id.removeprefix(IMPORTED_ID) if explanation_id.startswith(IMPORTED_ID) else \
        stable_id(explanation_id)
