"""`interp audit` on a tiny Llama with a planted SAE latent: latent 7 reads and writes the embedding of
"paris", so it responds to a Paris concept by construction. The audit must rank it first; a concept the
texts do not separate must come out "not found" with a probe near chance."""

import json

import numpy as np
import pytest

from agent.audit.run import run_audit
from agent.cli import main
from agent.labeling.config import LabelConfig
from tests.agent.test_label import rows
from tests.scripted import ScriptedChat
from tests.tools.test_probing import texts
from tools.errors import InterpError
from tools.model.subject import load_subject_model
from tools.testing.tiny import random_sae

PARIS_LATENT = 7
CONFIG = LabelConfig(llm="openai:scripted", device="cpu")


def sentences(with_paris: bool, n: int, seed: int) -> list[str]:
    return texts(with_paris, n, seed, length=4)


@pytest.fixture
def audited_catalog(tmp_path, tiny_models, text_corpus):
    return make_audited_catalog(tmp_path, tiny_models, text_corpus)


def make_audited_catalog(tmp_path, tiny_models, text_corpus):
    """A cached and token-stats-labeled SAE feature set at resid_pre.0 of the tiny Llama."""
    subject = load_subject_model(str(tiny_models["llama"]), device="cpu")
    embedding = subject.model.get_input_embeddings().weight[subject.tokenizer.convert_tokens_to_ids("paris")]
    direction = (embedding / embedding.norm()).detach()
    sae = random_sae(32, 16, "resid_pre.0", seed=3)
    sae.W_enc[:, PARIS_LATENT] = direction * 4
    sae.b_enc[PARIS_LATENT] = -2 * float(embedding.norm())  # fires on "paris" only: its projection is 4 |e|
    sae.W_dec[PARIS_LATENT] = direction * float(embedding.norm())
    folder = sae.save_saelens(tmp_path / "sae")
    catalog = tmp_path / "c.duckdb"
    common = ["--model", str(tiny_models["llama"]), "--corpus", str(text_corpus), "--tokens", "2000", "--window", "16",
              "--catalog", str(catalog), "--no-progress"]
    assert main(["sae", "load", str(folder), *common]) == 0
    assert main(["label", "resid_pre.0", "--explainer", "token-stats", "--scorers", "embedding", "--catalog",
                 str(catalog), "--device", "cpu", "--no-progress"]) == 0
    return catalog


def concepts_file(tmp_path, negative_given: bool = True):
    concepts = {"concepts": [
        {"name": "Paris", "description": "the city of Paris",
         "positive": sentences(True, 30, 1), "negative": sentences(False, 30, 2)},
        {"name": "nothing", "description": "texts that differ in no way",
         "positive": sentences(False, 30, 5), "negative": sentences(False, 30, 6)}]}
    if not negative_given:
        del concepts["concepts"][0]["negative"]
    path = tmp_path / "concepts.json"  # JSON is YAML too
    path.write_text(json.dumps(concepts))
    return path


def test_the_audit_finds_the_planted_latent_and_calls_an_absent_concept_not_found(audited_catalog, tmp_path):
    result = run_audit(CONFIG, concepts_file(tmp_path), "resid_pre.0", audited_catalog, tmp_path / "report")
    paris, nothing = result.audits
    assert paris.verdict == "represented" and paris.probe.ci_low > 0.5
    top = paris.candidates[0]
    assert top.feature == PARIS_LATENT and top.activation_auroc == 1.0
    assert "active" in top.found_by and "aligned" in top.found_by
    assert 'the tokens "paris"' in top.explanation and "embedding auroc" in top.explanation_scores
    assert top.verdict in ("carries the concept", "fires with the concept") and top.ablation > 0
    # Chosen on one half, confirmed on the other; the readout's held-out gap is real, so effects are measured.
    assert paris.n_choose == paris.n_confirm == 30 and top.held_out_auroc == 1.0 and top.held_out_p < 0.01
    assert paris.gap.significant and top.ablation_ci[0] <= top.ablation <= top.ablation_ci[1]
    assert nothing.verdict == "not found" and 0.2 < nothing.probe.auroc < 0.8
    # The null concept: no candidate beats the best feature by chance (family-wise), whatever its own AUROC.
    assert 0.5 <= nothing.chance_auroc < 1.0 and top.activation_auroc > paris.chance_auroc and top.family_p < 0.05
    assert not [c for c in nothing.candidates if c.verdict in ("carries the concept", "fires with the concept")]
    # Every number of the report is a catalog row of this run.
    audits = rows(audited_catalog, "SELECT concept, verdict, probe_auroc, texts_by FROM audits ORDER BY concept")
    assert [(a[0], a[1], a[3]) for a in audits] == [("Paris", "represented", "file"), ("nothing", "not found", "file")]
    (rank, feature, verdict), = rows(audited_catalog, "SELECT rank, feature, verdict FROM audit_candidates "
                                                      "WHERE concept = 'Paris' AND rank = 1")
    assert (feature, verdict) == (PARIS_LATENT, top.verdict)
    markdown = result.report_md.read_text()
    page = result.report_html.read_text()
    assert f"AUROC {paris.probe.auroc:.2f}" in markdown and f"| 1 | {PARIS_LATENT} | {top.verdict} |" in markdown
    assert f"the best feature by chance reaches activation AUROC {nothing.chance_auroc:.2f}" in markdown
    assert markdown.count("No feature survives") == 1  # the null concept's section says so; Paris's does not
    assert rows(audited_catalog, "SELECT held_out_auroc, family_p FROM audit_candidates WHERE concept = 'Paris' "
                                 "AND rank = 1") == [(1.0, top.family_p)]
    assert result.run_id in markdown and result.run_id in page
    assert page.count("<svg") >= 3 and "<script" not in page and "http" not in page.replace("http://www.w3.org", "")
    assert "**paris**" in markdown or "**paris" in markdown  # the activating token highlighted
    assert f"embedding auroc {top.explanation_scores['embedding auroc']:.2f}" in markdown
    assert rows(audited_catalog, "SELECT status FROM runs WHERE kind = 'audit'") == [("complete",)]


FIRES = ("carries the concept", "fires with the concept")


@pytest.mark.parametrize("seed", range(4))
def test_a_null_concept_yields_no_candidate_over_several_random_splits(audited_catalog, tmp_path, seed):
    """The report's control: 12 texts a side from one distribution, nothing a probe should find. Each seed
    splits the texts differently; none may produce a candidate that "fires" or "carries" the concept, nor
    a causal effect on a gap that is noise."""
    path = tmp_path / "null.json"
    path.write_text(json.dumps({"concepts": [{"name": "null", "description": "texts that differ in no way",
                                              "positive": sentences(False, 12, 20 + seed),
                                              "negative": sentences(False, 12, 40 + seed)}]}))
    result = run_audit(CONFIG, path, "resid_pre.0", audited_catalog, tmp_path / "report", seed=seed)
    audit, = result.audits
    assert audit.verdict == "not found" and (audit.n_choose, audit.n_confirm) == (12, 12)
    assert not [c for c in audit.candidates if c.verdict in FIRES]
    if not audit.gap.significant:
        assert all(c.ablation is None and c.steering is None for c in audit.candidates)
    assert "No feature survives" in result.report_md.read_text()
    assert set(audit.confounds) >= {"length in characters", "punctuation share"}


def test_surface_confounds_are_measured_and_flagged():
    from agent.audit.confounds import flagged, surface_confounds

    confounds = surface_confounds(["A long sentence, with commas; and more!", "Another long one, again, yes!!"],
                                  ["short", "tiny"])
    assert confounds["length in characters"] == 1.0 and confounds["punctuation share"] == 1.0
    assert confounds["digit share"] == 0.5
    assert any(line.startswith("length in characters (AUROC 1.00: positive") for line in flagged(confounds))


def test_missing_texts_are_written_by_the_llm_once_and_reused(audited_catalog, tmp_path):
    chat = ScriptedChat(lambda prompt: "Here:\n" + "\n".join(f"{i}. " + s for i, s in
                                                             enumerate(sentences(False, 8, 9), 1)))
    path = concepts_file(tmp_path, negative_given=False)
    first = run_audit(CONFIG, path, "resid_pre.0", audited_catalog, tmp_path / "r1", llm_factory=lambda s: chat)
    assert len(chat.prompts) == 1 and "nothing to do with: the city of Paris" in chat.prompts[0]
    assert first.audits[0].texts_by == "scripted" and first.audits[0].negative == sentences(False, 8, 9)
    second = run_audit(CONFIG, path, "resid_pre.0", audited_catalog, tmp_path / "r2", llm_factory=lambda s: chat)
    assert len(chat.prompts) == 1  # reused from the catalog, not written again
    assert second.audits[0].negative == first.audits[0].negative
    assert second.audits[0].probe == first.audits[0].probe  # same texts, same seed: the same numbers
    resolved = (tmp_path / "r1" / "concepts.resolved.yaml").read_text()
    assert sentences(False, 8, 9)[0] in resolved


def test_bad_audit_input_is_a_clear_error(audited_catalog, tmp_path, tiny_models, text_corpus, capsys):
    def fails(text: str, match: str, ref: str = "resid_pre.0") -> None:
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        with pytest.raises(InterpError, match=match):
            run_audit(CONFIG, path, ref, audited_catalog, tmp_path / "out")

    fails("concepts: [name: x\n", "is not valid YAML at line")
    fails("concepts:\n  - description: no name here\n", "concept 1 has no name")
    fails("concepts:\n  - name: x\n    positive: []\n", "'positive' is an empty list")
    fails("concepts:\n  - name: x\n    colour: red\n", "unknown keys \\['colour'\\]")
    fails("other: 1\n", "must hold a non-empty list under 'concepts:'")
    fails("concepts:\n  - name: x\n", "no feature set 'mlp.2'", ref="mlp.2")
    assert main(["cache", "--hook", "mlp.1", "--model", str(tiny_models["llama"]), "--corpus", str(text_corpus),
                 "--tokens", "500", "--window", "16", "--catalog", str(audited_catalog), "--no-progress"]) == 0
    fails("concepts:\n  - name: x\n", "has no explanations yet, so nothing to search; run `interp label mlp.1",
          ref="mlp.1")
    assert rows(audited_catalog, "SELECT count(*) FROM runs WHERE kind = 'audit'") == [(0,)]
    assert not (tmp_path / "out").exists()


def test_the_best_of_many_chance_features_sets_the_bar_a_candidate_must_pass():
    """2,048 features of pure noise on 24 texts: the best one's AUROC is about 0.76 by chance, the number
    an uncorrected audit reported as "fires with the concept"; a feature that truly separates passes."""
    from agent.audit.signal import chance_max_aurocs, feature_aurocs

    rng = np.random.default_rng(0)
    labels = np.array([1] * 12 + [0] * 12)
    peaks = rng.normal(size=(24, 2048))
    peaks[:, 0] += 3 * labels  # one real feature
    chance = chance_max_aurocs(peaks, labels)
    bar = float(np.quantile(chance, 0.95))
    aurocs = feature_aurocs(peaks, labels)
    assert 0.75 < float(np.median(chance)) < 0.9 and bar < 0.95
    assert aurocs[0] > bar and (chance >= aurocs[0]).mean() < 0.05
    assert (aurocs[1:] > bar).mean() < 0.01  # noise features stay under the bar


def test_candidates_chosen_on_one_half_of_noise_are_not_confirmed_on_the_other():
    """The best of 2,048 noise features on the choosing half looks real there (AUROC near 1 on 12 texts);
    on the other half its AUROC is chance, and its permutation p says so. The real feature holds."""
    from agent.audit.signal import feature_aurocs, held_out_aurocs, smallest_p, split_halves

    rng = np.random.default_rng(1)
    labels = np.array([1] * 12 + [0] * 12)
    peaks = rng.normal(size=(24, 2048))
    peaks[:, 0] += 3 * labels
    confirmed_noise = 0
    for seed in range(5):
        choose, confirm = split_halves(labels, seed)
        assert sorted(choose.tolist() + confirm.tolist()) == list(range(24)) and labels[confirm].sum() == 6
        chosen_aurocs = feature_aurocs(peaks[choose], labels[choose])
        best_noise = 1 + np.argsort(-chosen_aurocs[1:])[:3]
        assert chosen_aurocs[best_noise[0]] > 0.9  # choosing alone would call it a find
        held, p = held_out_aurocs(peaks[confirm][:, [0, *best_noise]], labels[confirm], seed=seed)
        assert held[0] >= 0.9 and p[0] < 0.01
        confirmed_noise += int(((held[1:] >= 0.75) & (p[1:] < 0.05)).sum())
    assert confirmed_noise <= 1  # of 15 noise candidates; each has a 5% chance
    assert smallest_p(np.array([1] * 4 + [0] * 4)) == pytest.approx(1 / 70)
    assert smallest_p(np.array([1] * 3 + [0] * 3)) == pytest.approx(1 / 20)  # 0.05: nothing can be confirmed
