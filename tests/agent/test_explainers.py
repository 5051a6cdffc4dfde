"""Explainers on records whose truth is planted."""

import re

import numpy as np
import pytest

from agent.labeling.explainers import Evidence, OneShotExplainer, TokenStatsExplainer
from agent.labeling.token_stats import CorpusCounts, token_statistics
from evals.records import ActivationRecord, FeatureRecord
from tests.evals.test_scoring import WORDS, paris_record
from tests.scripted import ScriptedChat


def corpus_with_rare_paris() -> CorpusCounts:
    words = [f" {w}" for w in WORDS]
    windows = [[words[(i * 7 + j) % len(words)] for j in range(16)] for i in range(200)]
    windows[0][3] = " paris"  # the planted token exists in the corpus, just rarely
    return CorpusCounts.from_windows(windows)


def test_token_statistics_explainer_recovers_a_planted_token_feature():
    record = paris_record()
    statistics = token_statistics(record, corpus_with_rare_paris())
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
    explainer = OneShotExplainer(chat, evidence=lambda r: Evidence(token_statistics(r, corpus),
                                                                   [" France", " Eiffel"]))
    assert explainer.explain(record).text == "French capital" and explainer.name == "evidence"
    (prompt,) = chat.prompts
    assert '" paris"' in prompt.split("more often than the corpus would predict:")[1].split("\n")[0]
    assert '" France", " Eiffel"' in prompt


def dense_comma_record(seed: int = 0) -> FeatureRecord:
    """Like neuron 311 of mlp.6: weak (0.2-1.5) on nearly every token, 7-9.3 on the comma of a list. Its few top
    examples hold the comma; its many quantile examples peak weakly, mostly on " is", " and" and " to"."""
    rng = np.random.default_rng(seed)
    common = [" is", " and", " to"]

    def record(peak: float | None) -> ActivationRecord:
        tokens = [f" {w}" for w in rng.choice(WORDS, 16)]
        values = list(rng.uniform(0.2, 0.6, 16))
        for position in rng.choice(16, 3, replace=False):
            tokens[position] = str(rng.choice(common))
            values[position] = float(rng.uniform(0.9, 1.5))
        if peak is not None:
            tokens[8], values[8] = ",", peak
        return ActivationRecord(tokens, values)

    top = [record(float(p)) for p in np.linspace(9.3, 7.0, 4)]
    return FeatureRecord(311, 9.3, top, [record(None) for _ in range(20)])


def test_token_statistics_lead_a_dense_feature_with_what_its_top_fires_on():
    corpus = corpus_with_rare_paris()
    corpus.tokens.update({",": 400, " is": 400, " and": 400, " to": 400})
    statistics = token_statistics(dense_comma_record(), corpus)
    assert statistics.tokens[0].text == "," and statistics.tokens[0].count == 4
    assert statistics.tokens[0].weight == pytest.approx(sum(np.linspace(9.3, 7.0, 4)) / 9.3)
    assert {item.text for item in statistics.tokens} == {","}  # the weak peaks are below half the feature's max
    assert TokenStatsExplainer(corpus).explain(dense_comma_record()).text.startswith('the tokens ","')


def html_record() -> FeatureRecord:
    """A feature of HTML tags: fires on "<html>" and "</div>"."""
    words = [f" {w}" for w in WORDS]

    def record(i: int) -> ActivationRecord:
        tokens = [words[(i * 5 + j) % len(words)] for j in range(12)]
        tokens[4], tokens[9] = "<html>", "</div>"
        return ActivationRecord(tokens, [5.0 if t.startswith("<") else 0.0 for t in tokens])

    return FeatureRecord(2, 5.0, [record(i) for i in range(6)], [])


def test_an_html_feature_is_explained_with_the_real_tag():
    def quote_the_first_mark(prompt: str) -> str:
        return "Explanation: the tag " + re.search(r"<<(.+?)>>(?!>)", prompt.split("<example 1>")[1]).group(1)

    chat = ScriptedChat(quote_the_first_mark)
    explanation = OneShotExplainer(chat, n_top=3, n_quantile=0).explain(html_record())
    assert explanation.text == "the tag <html>" and "<<<html>>>" in chat.prompts[0]
    corpus = corpus_with_rare_paris()
    label = TokenStatsExplainer(corpus).explain(html_record()).text
    assert label.startswith("the tokens ") and '"<html>"' in label and '"</div>"' in label
