"""Explainers on records whose truth is planted."""

from agent.labeling.explainers import Evidence, OneShotExplainer, TokenStatsExplainer
from agent.labeling.token_stats import CorpusCounts, token_statistics
from tests.evals.test_scoring import WORDS, paris_record
from tests.scripted import ScriptedChat


def corpus_with_rare_paris() -> CorpusCounts:
    words = [f" {w}" for w in WORDS]
    windows = [[words[(i * 7 + j) % len(words)] for j in range(16)] for i in range(200)]
    windows[0][3] = " paris"  # the planted token exists in the corpus, just rarely
    return CorpusCounts.from_windows(windows)


def test_token_statistics_explainer_recovers_a_planted_token_feature():
    record = paris_record()
    statistics = token_statistics(record.explain, corpus_with_rare_paris())
    assert statistics.tokens[0].text == " paris" and statistics.tokens[0].ratio > 10
    assert all(bigram.text.endswith(" paris") for bigram in statistics.bigrams)
    explanation = TokenStatsExplainer(corpus_with_rare_paris()).explain(record)
    assert explanation.text.startswith('the tokens "paris"') and explanation.usage.total == 0


def test_oneshot_explainer_shows_marked_explain_examples_only():
    record = paris_record()
    chat = ScriptedChat(lambda prompt: "Explanation: the word paris")
    explanation = OneShotExplainer(chat, n_top=3, n_quantile=2).explain(record)
    assert explanation.text == "the word paris" and explanation.usage.completion_tokens == 4
    (prompt,) = chat.prompts
    assert prompt.count("<example ") == 5 and "<< paris>>" in prompt and '" paris" (' in prompt
    held_out = {"".join(r.tokens) for r in record.score_active + record.score_random}
    assert not any(text in prompt.replace("<<", "").replace(">>", "") for text in held_out)


def test_evidence_explainer_adds_token_statistics_and_the_output_effect():
    record = paris_record()
    corpus = corpus_with_rare_paris()
    chat = ScriptedChat(lambda prompt: "French capital")
    explainer = OneShotExplainer(chat, evidence=lambda r: Evidence(token_statistics(r.explain, corpus),
                                                                   [" France", " Eiffel"]))
    assert explainer.explain(record).text == "French capital" and explainer.name == "evidence"
    (prompt,) = chat.prompts
    assert '" paris"' in prompt.split("more often than the corpus would predict:")[1].split("\n")[0]
    assert '" France", " Eiffel"' in prompt
