"""`interp eval planted` and `interp eval compare` on a tiny model's planted set: a simulator that knows
what the true descriptions mean ranks them above the false ones, runs are reproducible, and every number
is an `evals` row in the catalog."""

import json
import random

import numpy as np
import pytest

from agent.cli import main
from agent.evaluate.planted import run_planted_eval
from agent.labeling.config import LabelConfig
from evals.planted import PLANTED
from tests.agent.test_label import rows
from tests.scripted import ScriptedChat, ScriptedSimulator
from tools.errors import InterpError

TRUE_RULES = {feature.description: feature for feature in PLANTED}


class DescriptionReader(ScriptedSimulator):
    """Simulates a description by applying the planted rule it truly describes; a description that
    describes no rule gets noise. What a perfect simulator would do."""

    def __init__(self):
        super().__init__(self.predict_tokens)
        self.rule = None

    def slot_probabilities(self, prefix: str, parts: list[str], labels: list[str]):
        described = [f for description, f in TRUE_RULES.items() if description in prefix]
        self.rule = max(described, key=lambda f: len(f.description)) if described else None
        return super().slot_probabilities(prefix, parts, labels)

    def predict_tokens(self, tokens: list[str]) -> list[float]:
        if self.rule is None:
            rng = random.Random(" ".join(tokens))
            return [rng.random() for _ in tokens]
        return self.rule.activations(tokens)


@pytest.fixture
def planted_catalog(tmp_path, tiny_models, text_corpus):
    path = tmp_path / "c.duckdb"
    assert main(["cache", "--hook", "planted", "--model", str(tiny_models["gpt2"]), "--corpus", str(text_corpus),
                 "--tokens", "3000", "--window", "16", "--top-k", "8", "--random", "16", "--catalog", str(path),
                 "--no-progress"]) == 0
    return path


CONFIG = LabelConfig(llm="openai:scripted", simulator="local", scorers="simulation,embedding", device="cpu")


def test_a_perfect_simulator_ranks_every_true_description_first(planted_catalog):
    simulator = DescriptionReader()
    chat = ScriptedChat(lambda prompt: "Explanation: colour words")

    def factory(spec):
        return simulator if spec == "local" else chat

    result = run_planted_eval(CONFIG, ["token-stats", "oneshot"], planted_catalog, progress=False,
                              llm_factory=factory)
    by_key = {(r.subject, r.metric): r for r in result.rows}
    sanity = by_key[("scorer simulation", "truth beats false descriptions")]
    assert sanity.value == 1.0 and sanity.n >= 30 and sanity.ci_low == 1.0
    assert by_key[("scorer simulation", "pearson of the truth")].value > 0.9
    # The oneshot explainer answered "colour words" for everything: right once, a coin toss elsewhere.
    oneshot = by_key[("explainer oneshot (scripted)", "simulation beats false descriptions")]
    assert oneshot.value < 0.7 and oneshot.ci_high < sanity.ci_low
    similarity = by_key[("explainer token-stats", "similarity to the truth")]
    assert 0 < similarity.value < 1 and similarity.ci_low <= similarity.value <= similarity.ci_high
    recorded = rows(planted_catalog, "SELECT subject, metric, value FROM evals ORDER BY subject, metric")
    assert len(recorded) == len(result.rows)
    assert ("scorer simulation", "truth beats false descriptions", 1.0) in recorded
    truths = rows(planted_catalog, "SELECT DISTINCT text FROM explanations WHERE explainer = 'planted-truth'")
    assert {text for (text,) in truths} <= set(TRUE_RULES)


def test_eval_runs_are_reproducible_with_a_seed_and_resume_instead_of_redoing(planted_catalog, capsys):
    simulator = DescriptionReader()

    def factory(spec):
        return simulator

    config = LabelConfig(llm="local", scorers="simulation", device="cpu")
    first = run_planted_eval(config, ["token-stats"], planted_catalog, seed=3, progress=False, llm_factory=factory)
    explanations = rows(planted_catalog, "SELECT count(*) FROM explanations")
    second = run_planted_eval(config, ["token-stats"], planted_catalog, seed=3, progress=False, llm_factory=factory)
    assert [(r.subject, r.metric, r.value, r.ci_low, r.ci_high) for r in first.rows] == \
        [(r.subject, r.metric, r.value, r.ci_low, r.ci_high) for r in second.rows]
    assert rows(planted_catalog, "SELECT count(*) FROM explanations") == explanations  # nothing relabeled
    assert "labeling 0 of" in capsys.readouterr().err


def test_compare_pairs_two_configurations_feature_by_feature(planted_catalog, capsys):
    simulator = DescriptionReader()
    run_planted_eval(LabelConfig(llm="local", scorers="simulation", device="cpu"), ["token-stats"], planted_catalog,
                     progress=False, llm_factory=lambda spec: simulator)
    capsys.readouterr()
    assert main(["eval", "compare", "planted", "planted-truth", "token-stats", "--scorers", "simulation", "--json",
                 "--catalog", str(planted_catalog)]) == 0
    table = {(r["subject"], r["metric"]): r for r in json.loads(capsys.readouterr().out)}
    diff = table[("planted-truth - token-stats", "simulation pearson")]
    wins = table[("planted-truth - token-stats", "simulation wins")]
    losses = table[("planted-truth - token-stats", "simulation losses")]
    assert diff["value"] > 0 and wins["value"] > losses["value"] and wins["n"] == diff["n"]
    assert np.isclose(table[("planted-truth", "simulation pearson")]["value"] -
                      table[("token-stats", "simulation pearson")]["value"], diff["value"])
    assert table[("token-stats", "explainer LLM tokens per feature")]["value"] == 0  # token-stats calls no LLM
    assert rows(planted_catalog, "SELECT count(*) FROM runs WHERE kind = 'eval'") == [(2,)]


def test_bad_eval_input_is_a_clear_error(planted_catalog, tiny_models, text_corpus, capsys):
    assert main(["cache", "--hook", "mlp.1", "--model", str(tiny_models["gpt2"]), "--corpus", str(text_corpus),
                 "--tokens", "500", "--window", "16", "--catalog", str(planted_catalog), "--no-progress"]) == 0
    with pytest.raises(InterpError, match="holds neuron features, not planted ones; run `interp cache --hook planted`"):
        run_planted_eval(CONFIG, ["token-stats"], planted_catalog, set_ref="mlp.1")
    assert main(["eval", "planted", "--explainers", "nope", "--catalog", str(planted_catalog)]) == 2
    assert "unknown explainer 'nope'" in capsys.readouterr().err
    assert main(["eval", "compare", "planted", "oneshot", "token-stats", "--catalog", str(planted_catalog)]) == 2
    assert "no configuration 'oneshot' has labeled planted-" in capsys.readouterr().err
    assert main(["eval", "compare", "planted", "a", "b", "--scorers", "vibes", "--catalog",
                 str(planted_catalog)]) == 2
    assert "unknown scorers ['vibes']" in capsys.readouterr().err
    assert rows(planted_catalog, "SELECT count(*) FROM runs WHERE kind = 'eval'") == [(0,)]
