"""The intruder scorer: a judge names the one excerpt where the feature does not fire."""

import re

import pytest

from evals.records import FeatureRecord
from evals.scorers.base import ScoreError
from evals.scorers.intruder import IntruderScorer, parse_number
from tests.evals.test_scoring import paris_record
from tests.scripted import ScriptedChat
from tools.llm.local import LocalLLM
from tools.model.subject import load_subject_model
from tools.testing.tiny import save_tiny_model


def blocks(prompt: str) -> list[str]:
    return [b for _, b in re.findall(r"<example (\d+)>\n(.*?)\n</example \1>", prompt, re.S)]


def finds_the_intruder(prompt: str) -> str:
    """A perfect judge of the paris feature: the excerpt whose marks are not on " paris"."""
    marks = [re.findall(r"<<(.+?)>>", block) for block in blocks(prompt)]
    return str(next(i for i, marked in enumerate(marks, 1) if any(m != " paris" for m in marked)))


def test_a_judge_that_finds_the_intruder_scores_one_and_one_that_always_says_one_scores_chance():
    record = paris_record()
    judge = ScriptedChat(finds_the_intruder)
    accuracy, p_intruder = IntruderScorer(judge, rounds=40).score("ignored", record).scores
    assert (accuracy.metric, accuracy.value, p_intruder.value, accuracy.n) == ("accuracy", 1.0, 1.0, 40)
    assert accuracy.details["chance"] == 0.2 and accuracy.details["text_answers"] == 40
    assert all(len(blocks(p)) == 5 and "ignored" not in p for p in judge.prompts)  # no explanation is shown
    always_first = IntruderScorer(ScriptedChat(lambda prompt: "1"), rounds=100).score("x", record).scores[0]
    assert always_first.ci_low <= 0.2 <= always_first.ci_high and always_first.value < 0.4


def test_unusable_answers_and_records_are_recorded_failures():
    assert parse_number("Example 3.", 5) == 2 and parse_number("[4]", 5) == 3
    record = paris_record()
    calls = []

    def every_other_unusable(prompt: str) -> str:
        calls.append(prompt)
        return "none of them" if len(calls) % 2 else finds_the_intruder(prompt)

    half = IntruderScorer(ScriptedChat(every_other_unusable), rounds=20).score("x", record).scores[0]
    assert (half.details["malformed"], half.n, half.value) == (10, 10, 1.0)
    with pytest.raises(ScoreError, match="named no excerpt"):
        IntruderScorer(ScriptedChat(lambda p: "the third"), rounds=3).score("x", record)
    no_negatives = FeatureRecord(1, 10.0, [], [], record.score_active, [])
    with pytest.raises(ScoreError, match="non-activating"):
        IntruderScorer(ScriptedChat(finds_the_intruder)).score("x", no_negatives)


def test_an_in_process_model_answers_from_its_probabilities(tmp_path):
    llm = LocalLLM(load_subject_model(str(save_tiny_model("llama", tmp_path, tokenizer="bpe")), device="cpu"), "tiny")
    accuracy, p_intruder = IntruderScorer(llm, rounds=6).score("x", paris_record()).scores
    assert accuracy.details["probabilities"] == 6 and accuracy.details["text_answers"] == 0
    assert 0.0 < p_intruder.value < 1.0  # a distribution over the five excerpts, not a hard pick
