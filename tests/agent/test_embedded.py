"""The real embedded defaults: Gemma 3 270M from its GGUF package and the fortunes corpus."""

import duckdb
import pytest

from agent.cli import main
from tools.model.hooks import HookPoint, hook_width, n_layers
from tools.model.subject import EMBEDDED_MODEL, load_subject_model

pytestmark = pytest.mark.slow


def test_embedded_gemma_loads_from_its_package_with_the_expected_shape():
    subject = load_subject_model(EMBEDDED_MODEL)
    assert type(subject.model).__name__ == "Gemma3ForCausalLM"
    assert n_layers(subject.model) == 18
    assert hook_width(subject.model, HookPoint("mlp", 6)) == 2048
    assert hook_width(subject.model, HookPoint("resid_post", 6)) == 640
    ids = subject.tokenizer("The capital of France is", return_tensors="pt").input_ids
    out = subject.model.generate(ids, max_new_tokens=3, do_sample=False)
    assert "France" in subject.tokenizer.decode(out[0]) or "Paris" in subject.tokenizer.decode(out[0])


def test_cache_real_gemma_on_fortunes_and_show_examples(tmp_path, capsys):
    catalog = tmp_path / "c.duckdb"
    assert main(["cache", "--tokens", "384", "--hook", "mlp.6", "--top-k", "4", "--batch-size", "3",
                 "--catalog", str(catalog), "--no-progress"]) == 0
    with duckdb.connect(str(catalog), read_only=True) as con:
        assert con.execute("SELECT n_features, tokens FROM feature_sets").fetchone() == (2048, 384)
        # Every neuron active somewhere has top examples; one never active (1453 on fortunes) has none.
        active = con.execute("SELECT count(*) FROM features WHERE window_density > 0").fetchone()[0]
        assert con.execute("SELECT count(DISTINCT feature) FROM examples WHERE bucket = 'top'").fetchone() == (active,)
        assert 2040 <= active <= 2048
        tokens = con.execute("SELECT tokens FROM windows LIMIT 1").fetchone()[0]
    assert tokens[0] == "<bos>" and any(token.strip().isalpha() for token in tokens)
    capsys.readouterr()
    assert main(["features", "mlp.6", "0", "--catalog", str(catalog), "-n", "2"]) == 0
    shown = capsys.readouterr().out
    assert "gemma-3-270m" in shown and "#0 max" in shown


def test_gguf_file_path_reuses_the_dequantized_cache_and_matches_the_gguf_model():
    """A .gguf path is keyed by its sha256, so the embedded file maps to the same cached folder; that
    folder's logits equal those of transformers' own GGUF loader (the dequantization is exact)."""
    import torch
    from transformers import AutoModelForCausalLM

    from tools.model.subject import embedded_gguf

    gguf_path, expected_sha = embedded_gguf()
    subject = load_subject_model(str(gguf_path))
    assert subject.sha256 == expected_sha
    assert subject.path == load_subject_model(EMBEDDED_MODEL).path
    direct = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                  dtype=torch.float32).eval()
    ids = subject.tokenizer("Why did the chicken cross the road?", return_tensors="pt").input_ids
    with torch.inference_mode():
        torch.testing.assert_close(subject.model(ids).logits, direct(ids).logits)


def test_label_both_sides_of_a_real_neuron_with_the_embedded_llm(tmp_path):
    """`--explainer both --scorers simulation,detection,intervention` on the defaults: the embedded SmolLM2
    explains from the marked examples and the steered continuations, and every scorer leaves a row."""
    catalog = tmp_path / "c.duckdb"
    assert main(["cache", "--tokens", "2000", "--hook", "mlp.6", "--catalog", str(catalog), "--no-progress"]) == 0
    assert main(["label", "mlp.6", "--features", "0", "--explainer", "both", "--scorers",
                 "simulation,detection,intervention", "--catalog", str(catalog), "--no-progress"]) == 0
    with duckdb.connect(str(catalog), read_only=True) as con:
        explainer, status = con.execute("SELECT explainer, status FROM explanations").fetchone()
        scores = con.execute("SELECT scorer, metric, status, error FROM scores").fetchall()
    assert (explainer, status) == ("both", "ok")
    # Each scorer leaves its rows: a score, or a failure that says why (on 2,000 tokens a dense neuron may have
    # no random window quiet enough to be a negative for detection).
    assert {scorer for scorer, *_ in scores} == {"simulation", "detection", "intervention"}
    assert all(status == "ok" or error for _, _, status, error in scores)
    assert ("intervention", "auroc", "ok", None) in [(s, m, st, e) for s, m, st, e in scores]
