"""What a feature does, not only what it reads: a tiny Llama with a planted SAE latent that reads "paris" and
writes "london" (its decoder row is the unembedding of "london"). The output explainer's evidence must name
the written token; the intervention scorer, with a judge that picks the continuation the explanation
predicts, must score the true output description high and a false one at chance; `interp label` records
both kinds of explanation and score; planted features, with no model behind them, are refused in one line."""

import json
import re

import pytest

from agent.cli import main
from agent.investigate.workbench import Workbench
from agent.labeling.config import LabelConfig
from agent.labeling.explainers import OutputExplainer
from agent.labeling.pipeline import run_label
from evals.scorers.intervention import InterventionScorer
from tests.agent.test_label import rows
from tests.scripted import ScriptedChat, is_judge, yes
from tools.errors import InterpError
from tools.experiments.steering import Steerer
from tools.model.subject import load_subject_model
from tools.testing.tiny import random_sae

LATENT = 7


@pytest.fixture
def output_catalog(tmp_path, tiny_models, text_corpus):
    subject = load_subject_model(str(tiny_models["llama"]), device="cpu")
    reads = subject.model.get_input_embeddings().weight[subject.tokenizer.convert_tokens_to_ids("paris")]
    writes = subject.model.get_output_embeddings().weight[subject.tokenizer.convert_tokens_to_ids("london")]
    sae = random_sae(32, 16, "resid_pre.0", seed=3)
    sae.W_enc[:, LATENT] = (reads / reads.norm()).detach() * 4
    sae.b_enc[LATENT] = -2 * float(reads.norm())  # fires on "paris" only
    sae.W_dec[LATENT] = (writes / writes.norm()).detach() * float(reads.norm())
    folder = sae.save_saelens(tmp_path / "sae")
    catalog = tmp_path / "c.duckdb"
    assert main(["sae", "load", str(folder), "--model", str(tiny_models["llama"]), "--corpus", str(text_corpus),
                 "--tokens", "2000", "--window", "16", "--catalog", str(catalog), "--no-progress"]) == 0
    return catalog


def explanation_in(prompt: str) -> str:
    return re.search(r'is explained as: "([^"]*)"', prompt).group(1)


def judge(prompt: str) -> str:
    """Picks the continuation with more of the token the explanation says the feature writes; with an
    explanation that names no output token, always the first (a judge with nothing to go on)."""
    named = [word for word in ("london", "tokyo", "blue") if word in explanation_in(prompt)]
    if not named:
        return "1"
    first, second = (prompt.split(f"<continuation {n}>")[1].split(f"</continuation {n}>")[0] for n in (1, 2))
    return "1" if first.count(named[0]) >= second.count(named[0]) else "2"


def test_the_output_explainer_sees_the_written_token_in_its_evidence(output_catalog):
    bench = Workbench(output_catalog, "resid_pre.0", "cpu", "all-MiniLM-L6-v2")
    steerer = Steerer(*bench.subject_and_source)
    record = bench.record(LATENT)
    evidence = steerer.output_evidence(LATENT, record.max_act)
    assert evidence.promoted[0] == "london" and evidence.strength > 0
    assert all(c.steered.split().count("london") > c.clean.split().count("london") for c in evidence.continuations)
    chat = ScriptedChat(lambda prompt: "Explanation: makes the model say london")
    for mode in ("output", "both"):
        explained = OutputExplainer(chat, steerer, mode).explain(record)
        assert explained.text == "makes the model say london"
        prompt = chat.prompts[-1]
        assert 'Tokens it makes more likely next: "london"' in prompt and "feature turned up: london london" in prompt
        assert ("<<paris>>" in prompt) == (mode == "both")  # only 'both' shows what it reads


def test_the_intervention_score_is_high_for_the_true_output_and_at_chance_for_a_false_one(output_catalog):
    bench = Workbench(output_catalog, "resid_pre.0", "cpu", "all-MiniLM-L6-v2")
    scorer = InterventionScorer(ScriptedChat(judge), Steerer(*bench.subject_and_source))
    record = bench.record(LATENT)
    true, = [s for s in scorer.score("makes the model say london", record).scores if s.metric == "auroc"]
    assert true.value == 1.0 and true.n >= 6 and true.details["unchanged"] == 0
    # Told nothing, this judge has nothing to go on: the baseline is at chance, and the true score is read above it.
    assert true.details["baseline_prompts"] == true.n and true.details["baseline_auroc"] < 0.8
    false, = [s for s in scorer.score("the color blue", record).scores if s.metric == "auroc"]
    assert false.ci_low <= 0.5 <= false.ci_high and false.value < 0.8
    # A judge that always answers "1" is at chance because the steered continuation's slot is random.
    assert 0 < false.details["prompts"] == true.details["prompts"]
    assert scorer.prompt_hash != scorer.prompt.sha256  # keyed by the steering setting too


def test_label_records_input_and_output_explanations_and_intervention_scores(output_catalog, capsys):
    def answers(prompt: str) -> str:
        if "Answer 1 or 2" in prompt:
            return judge(prompt)
        if is_judge(prompt):
            return yes(prompt)
        return "Explanation: paris, and makes the model say london"

    for explainer in ("oneshot", "both"):
        config = LabelConfig(explainer=explainer, scorers="detection,intervention", llm="openai:scripted",
                             features=str(LATENT), device="cpu")
        result = run_label(config, "resid_pre.0", output_catalog, progress=False,
                           llm_factory=lambda spec: ScriptedChat(answers))
        assert result.labeled == 1 and result.failed == 0
    scored = rows(output_catalog, "SELECT e.explainer, s.scorer, s.metric, s.value, s.status FROM explanations e "
                                  "JOIN scores s USING (explanation_id) WHERE s.metric = 'auroc' ORDER BY 1, 2")
    assert [(e, s) for e, s, _, _, _ in scored] == [("both", "detection"), ("both", "intervention"),
                                                    ("oneshot", "detection"), ("oneshot", "intervention")]
    assert all(status == "ok" for *_, status in scored)
    assert dict(((e, s), v) for e, s, _, v, _ in scored)[("both", "intervention")] == 1.0
    # Input-only against both, feature by feature, on the new scorer too.
    capsys.readouterr()
    assert main(["eval", "compare", "resid_pre.0", "oneshot", "both", "--json", "--catalog",
                 str(output_catalog)]) == 0
    compared = json.loads(capsys.readouterr().out)
    metrics = {r["metric"] for r in compared}
    assert {"detection auroc", "intervention auroc"} <= metrics and not any("simulation" in m for m in metrics)


def test_planted_features_are_refused_for_output_explainers_and_intervention(tmp_path, tiny_models, text_corpus):
    catalog = tmp_path / "planted.duckdb"
    assert main(["cache", "--hook", "planted", "--model", str(tiny_models["gpt2"]), "--corpus", str(text_corpus),
                 "--tokens", "600", "--window", "16", "--catalog", str(catalog), "--no-progress"]) == 0
    for flags in ({"scorers": "intervention"}, {"explainer": "output", "scorers": ""}):
        config = LabelConfig(llm="openai:scripted", device="cpu", limit=1, **flags)
        with pytest.raises(InterpError, match="planted features, which have no model behind them") as refused:
            run_label(config, "planted", catalog, progress=False, llm_factory=lambda spec: ScriptedChat(yes))
        assert "\n" not in str(refused.value)
    assert rows(catalog, "SELECT count(*) FROM runs WHERE kind = 'label'") == [(0,)]
