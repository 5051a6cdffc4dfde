"""`interp eval control`: a set's scores beside a seeded random copy of its model's, on a tiny model."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from agent.cli import main
from agent.evaluate.control import run_control
from agent.labeling.config import LabelConfig
from evals.control import compare_to_control
from tests.scripted import ScriptedSimulator
from tools.catalog import Catalog
from tools.errors import InterpError
from tools.model.subject import load_subject_model

CONFIG = LabelConfig(explainer="token-stats", scorers="simulation,embedding", simulator="local", device="cpu")


class QuotedTokens(ScriptedSimulator):
    """Simulates an explanation by predicting 1 on the tokens it quotes, 0 elsewhere: a fixed rule that reads
    the explanation, so trained and control labels are scored alike."""

    def __init__(self):
        super().__init__(self.predict_tokens)
        self.quoted: set[str] = set()

    def slot_probabilities(self, prefix: str, parts: list[str], labels: list[str]):
        self.quoted = set(re.findall(r'"([^"]+)"', prefix.rsplit("Explanation:", 1)[-1].split("\n")[0]))
        return super().slot_probabilities(prefix, parts, labels)

    def predict_tokens(self, tokens: list[str]) -> list[float]:
        return [1.0 if token.strip() in self.quoted else 0.0 for token in tokens]


def factory(spec: str):
    return QuotedTokens()


def test_the_comparison_tells_a_shifted_distribution_from_an_identical_one():
    rng = np.random.default_rng(0)
    control = rng.normal(0.6, 0.1, 200)
    same = compare_to_control("embedding", "auroc", rng.normal(0.6, 0.1, 200), control)
    assert same.within_control and same.ci_low < 0 < same.ci_high and 0.0 < same.above < 0.15
    better = compare_to_control("embedding", "auroc", rng.normal(0.9, 0.1, 200), control)
    assert not better.within_control and better.ci_low > 0.2 and better.above > 0.8
    assert better.above_low <= better.above <= better.above_high
    assert better.control.q25 < better.control.median < better.control.q75 < better.control.p95


def test_a_random_copy_has_the_architecture_and_new_seeded_weights(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    trained = load_subject_model(str(tiny_models["llama"]), device="cpu")
    first = load_subject_model(f"random:3:{tiny_models['llama']}", device="cpu")
    again = load_subject_model(f"random:3:{tiny_models['llama']}", device="cpu")
    other = load_subject_model(f"random:4:{tiny_models['llama']}", device="cpu")
    assert first.model.config.to_dict() == trained.model.config.to_dict() | {"_name_or_path": first.path} or \
        type(first.model) is type(trained.model)
    assert first.sha256 == again.sha256 != other.sha256 != trained.sha256
    weights = {name: (a, b) for (name, a), b in zip(first.model.state_dict().items(),
                                                    trained.model.state_dict().values(), strict=True)}
    assert not torch.equal(*weights["model.layers.0.mlp.up_proj.weight"])
    assert torch.equal(weights["model.norm.weight"][0], torch.ones_like(weights["model.norm.weight"][0]))
    with pytest.raises(InterpError, match="random:SEED:MODEL"):
        load_subject_model("random:x:gemma-3-270m")


@pytest.fixture
def cached(tmp_path, tiny_models, text_corpus, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "models"))
    path = tmp_path / "c.duckdb"
    assert main(["cache", "--model", str(tiny_models["gpt2"]), "--hook", "mlp.1", "--corpus", str(text_corpus),
                 "--tokens", "3000", "--window", "16", "--top-k", "8", "--random", "16", "--catalog", str(path),
                 "--no-progress"]) == 0
    return path


def test_control_labels_the_same_sample_on_both_sides_and_records_the_comparison(cached, capsys):
    result = run_control(CONFIG, "mlp.1", cached, sample=12, model_seed=7, progress=False, llm_factory=factory)
    assert result.control_set_id != result.set_id and len(result.features) == 12
    (simulation,) = [c for c in result.comparisons if c.scorer != "embedding"]  # dense neurons: few negatives
    assert (simulation.scorer, simulation.metric, simulation.trained.n, simulation.control.n) == \
        ("simulation", "pearson", 12, 12)
    with Catalog(cached, read_only=True) as catalog:
        control_set = catalog.feature_set(result.control_set_id)
        assert control_set["model"].startswith("random:7:") and control_set["hook"] == "mlp.1"
        assert catalog.feature_set("mlp.1")["feature_set_id"] == result.set_id  # a hook never names the control
        rows = catalog.all_rows("SELECT * FROM evals WHERE run_id = ?", [result.run_id])
        labeled = {ref: catalog.con.execute("SELECT list(DISTINCT feature ORDER BY feature) FROM explanations "
                                            "WHERE feature_set_id = ?", [ref]).fetchone()[0]
                   for ref in (result.set_id, result.control_set_id)}
    assert labeled[result.set_id] == labeled[result.control_set_id] == result.features
    row = next(row for row in rows if row["subject"] == "scorer simulation")
    details = json.loads(row["details"])
    assert (row["eval"], row["value"], details["control_set"]) == ("control", simulation.difference,
                                                                   result.control_set_id)
    assert details["trained"]["n"] == 12 and details["within_control"] == simulation.within_control
    assert len(rows) == len(result.comparisons)

    # A rerun caches and labels nothing again, and finds the same numbers.
    again = run_control(CONFIG, "mlp.1", cached, sample=12, model_seed=7, progress=False, llm_factory=factory)
    assert again.control_set_id == result.control_set_id and again.features == result.features
    assert [c.difference for c in again.comparisons] == [c.difference for c in result.comparisons]
    shown_beside_the_scores(cached, result, simulation, capsys)


def shown_beside_the_scores(catalog: Path, result, simulation, capsys) -> None:
    """The feature-set page, `interp eval compare` and `interp label` show the control; a score whose interval
    includes the control's mean is marked."""
    from fastapi.testclient import TestClient

    from agent.web.app import create_app

    page = TestClient(create_app(catalog)).get(f"/sets/{result.set_id}", params={"metric": "simulation pearson"})
    assert page.status_code == 200 and "Random-model control" in page.text and result.control_set_id in page.text
    assert f"{simulation.control.mean:.2f} [" in page.text
    with Catalog(catalog, read_only=True) as opened:
        intervals = dict(((feature, (low, high)) for feature, low, high in opened.con.execute(
            "SELECT e.feature, s.ci_low, s.ci_high FROM scores s JOIN explanations e USING (explanation_id) WHERE "
            "e.feature_set_id = ? AND s.scorer = 'simulation' AND s.status = 'ok'", [result.set_id]).fetchall()))
    within = {f for f, (low, high) in intervals.items() if low <= simulation.control.mean <= high}
    assert page.text.count("≈ control</span>") == len({f for f in within if f < 100})  # the first page's
    assert "This set is itself a control" in TestClient(create_app(catalog)).get(f"/sets/{result.control_set_id}").text

    from agent.views.terminal import show_labels
    from evals.compare import control_rows
    from evals.control import newest_control

    with Catalog(catalog, read_only=True) as opened:
        control = newest_control(opened, result.set_id)
        rows = opened.label_summary(result.set_id, "token-stats", "", "method-2", result.features)
    capsys.readouterr()
    show_labels(rows, "labels", ["simulation"], None, {"simulation pearson": simulation.control.mean})
    assert capsys.readouterr().out.count("≈ control") == len(within)
    (row,) = control_rows(control, ["simulation", "embedding"])  # embedding scored too few features here
    assert (row.subject, row.metric, row.value) == (f"control: token-stats on {result.control_set_id}",
                                                    "simulation pearson", simulation.control.mean)
    assert row.ci_low <= row.value <= row.ci_high


def test_control_of_a_set_without_a_model_is_refused_in_one_line(tmp_path, tiny_models, text_corpus):
    path = tmp_path / "p.duckdb"
    assert main(["cache", "--hook", "planted", "--model", str(tiny_models["gpt2"]), "--corpus", str(text_corpus),
                 "--tokens", "2000", "--window", "16", "--catalog", str(path), "--no-progress"]) == 0
    with pytest.raises(InterpError, match="no model to randomize"):
        run_control(CONFIG, "planted", path, progress=False)


def test_control_of_an_sae_set_trains_the_same_width_on_the_random_model(tmp_path, tiny_models, text_corpus,
                                                                         monkeypatch):
    """A ReLU SAE's control is a TopK SAE of its width with k its mean L0, trained once and then reused."""
    from tools.sae.formats import load_sae
    from tools.testing.tiny import random_sae

    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "models"))
    sae = random_sae(32, 64, "resid_post.1", seed=2)
    sae.b_enc.zero_()
    catalog = tmp_path / "c.duckdb"
    assert main(["sae", "load", str(sae.save_saelens(tmp_path / "sae")), "--model", str(tiny_models["llama"]),
                 "--corpus", str(text_corpus), "--tokens", "1500", "--window", "16", "--device", "cpu", "--catalog",
                 str(catalog), "--no-progress"]) == 0
    result = run_control(CONFIG, "resid_post.1-sae", catalog, sample=8, model_seed=7, progress=False,
                         llm_factory=factory)
    with Catalog(catalog, read_only=True) as opened:
        control_set = opened.feature_set(result.control_set_id)
    coder = Path(control_set["source_path"])
    assert coder.parent.parent.name == "c.duckdb.controls" and control_set["kind"] == "sae"
    trained = load_sae(coder)
    assert (trained.d_sae, trained.hook, trained.activation) == (64, "resid_post.1", "topk")
    assert json.loads((coder / "cfg.json").read_text())["metadata"]["model_name"].startswith("random:7:")
    written = (coder / "sae_weights.safetensors").stat().st_mtime_ns
    again = run_control(CONFIG, "resid_post.1-sae", catalog, sample=8, model_seed=7, progress=False,
                        llm_factory=factory)
    assert again.control_set_id == result.control_set_id
    assert (coder / "sae_weights.safetensors").stat().st_mtime_ns == written  # trained once


def test_control_of_a_transcoder_layer_trains_that_layers_transcoder(tmp_path, tiny_models, monkeypatch):
    from tests.tracing import transcoder_catalog
    from tools.sae.formats import load_sae

    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "models"))
    catalog, _ = transcoder_catalog(tiny_models["llama"], tmp_path, layer=1, label=False)
    result = run_control(CONFIG, "mlp_in.1", catalog, sample=6, model_seed=7, progress=False, llm_factory=factory)
    with Catalog(catalog, read_only=True) as opened:
        control_set = opened.feature_set(result.control_set_id)
    coder = load_sae(control_set["source_path"], hook="mlp_in.1", layer=1)
    assert (control_set["kind"], coder.d_sae, coder.k, coder.W_skip is not None) == ("transcoder", 48, 4, True)
    assert len(result.features) == 6 and result.comparisons
