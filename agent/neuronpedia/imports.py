"""`interp import neuronpedia DIR`: explanations published on Neuronpedia (a dataset export's
`explanations*/batch-*.jsonl.gz`, rows of its `Explanation` table; some sources have a folder per
explaining model, like `explanations-gpt-4o-mini/`) into the catalog as explanations of a
feature set of ours, so `interp label SET --score-only neuronpedia:TYPE` scores them with our scorers on
our held-out examples and `interp eval compare` sets them beside ours.

Each becomes an explanation by `neuronpedia:<typeName>`, its LLM Neuronpedia's `explanationModelName`;
its id is `np:<Neuronpedia's id>`, which the Neuronpedia export gives back unchanged; the run records the
folder read. Everything is checked before anything is written; a second import of the same files adds
nothing (one explanation per feature, explainer and LLM).
"""

import gzip
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.labeling.explainers import RecordedExplainer
from agent.labeling.rows import FeatureOutcome, embed_explanations, explanation_row
from agent.neuronpedia.activation_check import (
    AGREE,
    Agreement,
    activation_files,
    check_same_features,
    compare,
    read_their_activations,
)
from agent.neuronpedia.names import IMPORTED, IMPORTED_ID
from evals.scorers.embedding import Embedder
from tools.catalog import Catalog
from tools.errors import InterpError
from tools.llm.interface import Usage

log = logging.getLogger(__name__)
WRITE_ROWS = 1024


@dataclass(frozen=True)
class Published:
    """One Neuronpedia explanation, as its row names it."""

    np_id: str
    feature: int
    text: str
    type_name: str
    model_name: str
    where: str


@dataclass(frozen=True)
class ImportResult:
    feature_set_id: str
    run_id: str
    read: int
    written: int
    source: str
    agreement: Agreement | None
    """Their activations against ours, when the export held activations."""


def batch_files(folder: Path) -> list[Path]:
    """Every explanations folder's batches: an export may hold one a model (`explanations-gpt-4o-mini/`)."""
    found = sorted(folder.glob("explanations*/batch-*.jsonl.gz")) or sorted(folder.glob("batch-*.jsonl.gz"))
    if not found:
        raise InterpError(f"'{folder}' holds no explanations*/batch-*.jsonl.gz (a Neuronpedia dataset export's "
                          "explanations)")
    return found


def read_published(files: list[Path]) -> tuple[list[Published], str]:
    """Every row, checked; the one `modelId/layer` they all belong to."""
    rows, sources = [], set()
    for path in files:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                where = f"{path.name}:{number}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise InterpError(f"{where} is not JSON ({error.msg})") from None
                if not isinstance(row, dict):
                    row = {"(not an object)": None}
                index, text = row.get("index"), row.get("description")
                if not isinstance(text, str) or not text.strip() or not str(index).isdigit():
                    raise InterpError(f"{where}: expected a Neuronpedia Explanation row with an integer 'index' and "
                                      f"a 'description', got keys {sorted(row)[:8]}")
                sources.add(f"{row.get('modelId', '?')}/{row.get('layer', '?')}")
                rows.append(Published(str(row.get("id") or f"{path.name}:{number}"), int(str(index)), text.strip(),
                                      str(row.get("typeName") or "unknown"), str(row.get("explanationModelName") or ""),
                                      where))
    if len(sources) > 1:
        raise InterpError(f"the files hold explanations of {len(sources)} sources ({', '.join(sorted(sources)[:4])}); "
                          "import one source's folder at a time")
    return rows, next(iter(sources), "?")


def activation_agreement(folder: Path, catalog_path: Path, set_id: str, features: set[int], source: str,
                         device: str) -> Agreement | None:
    """Their activations against ours on their text, when the export holds activations and the features are
    part of a model; refuses the import when they clearly disagree."""
    files = activation_files(folder)
    if not files:
        return None
    from tools.experiments.interventions import load_feature_source

    subject, features_source, _ = load_feature_source(catalog_path, set_id, device)
    if features_source.not_in_model:
        return None
    agreement = compare(subject, features_source, read_their_activations(files, features))
    check_same_features(agreement, source, set_id)
    if agreement.pearson is None or agreement.pearson < AGREE:
        log.warning(f"Neuronpedia source {source} vs {set_id}: {agreement.describe()}")
    return agreement


def import_neuronpedia(folder: Path, catalog_path: Path, feature_set_ref: str, embedder_spec: str,
                       device: str = "auto", check_activations: bool = True) -> ImportResult:
    folder = Path(folder)
    rows, source = read_published(batch_files(folder))
    with Catalog(catalog_path, read_only=True) as catalog:
        feature_set = catalog.feature_set(feature_set_ref)
    set_id, n_features = feature_set["feature_set_id"], feature_set["n_features"]
    outside = sorted({row.feature for row in rows if row.feature >= n_features})
    if outside:
        raise InterpError(f"Neuronpedia source {source} names features {outside[:5]} that feature set {set_id} "
                          f"lacks (features 0..{n_features - 1}): is it the same model and SAE?")
    agreement = activation_agreement(folder, catalog_path, set_id, {row.feature for row in rows}, source,
                                     device) if check_activations else None
    embedder = Embedder(embedder_spec, device=device)
    config = {"source": str(folder.resolve()), "neuronpedia_source": source, "feature_set": set_id,
              "activation_check": asdict(agreement) if agreement else None}
    written = 0
    with Catalog.run(catalog_path, "import", config) as run_id:
        for start in range(0, len(rows), WRITE_ROWS):
            outcomes = []
            for row in rows[start:start + WRITE_ROWS]:
                explainer = RecordedExplainer(IMPORTED + row.type_name, row.model_name, "")
                explanation = explanation_row(explainer, embedder, set_id, row.feature, run_id, row.text, None,
                                              Usage(), embed=False)
                explanation["explanation_id"] = IMPORTED_ID + row.np_id
                outcomes.append(FeatureOutcome(row.feature, explanation))
            embed_explanations(outcomes, embedder)
            with Catalog(catalog_path) as catalog:
                written += sum(catalog.record_labels([(outcome.explanation, []) for outcome in outcomes]))
    log.info(f"imported {written} of {len(rows)} explanations of Neuronpedia source {source} into {set_id} "
             f"(run {run_id}); the rest were already there")
    return ImportResult(set_id, run_id, len(rows), written, source, agreement)
