"""Yes/no judgments by an LLM over held-out examples: the machinery that detection and fuzzing share
(Paulo et al. 2024). Each example is judged in its own call, so a weak model never has to keep a
numbered list straight; a backend that gives token probabilities answers with P(yes) in one forward
pass, and an endpoint that sends the answer's top log-probabilities answers with P(yes) read from them,
which makes the AUROC more than a restatement of the accuracy. The details count which way each answer
was read."""

import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from evals.scorers.base import Score, ScoreError, ScorerResult
from evals.stats import bootstrap_interval, weighted_auroc, weighted_balanced_accuracy
from prompts import Prompt
from tools.llm.interface import ChatLLM, ChoiceLLM, LLMError, Usage

ANSWER_TOKENS = 3
YES = ("yes", "true", "1")
NO = ("no", "false", "0")


class MalformedAnswer(LLMError):
    """An answer that was neither yes nor no: that example is dropped, the others still count."""


def parse_yes_no(text: str) -> bool:
    words = re.findall(r"[a-z0-9]+", text.lower())
    if words and words[0] in YES:
        return True
    if words and words[0] in NO:
        return False
    raise MalformedAnswer(f"judge answered {text.strip()[:40]!r}, expected Yes or No")


def judge(llm: ChatLLM, messages: list[dict]) -> tuple[float, Usage, bool]:
    """P(yes) from token probabilities where the backend gives them for this answer, else 1.0 or 0.0 from
    the answer's text; and whether it came from probabilities."""
    if isinstance(llm, ChoiceLLM):
        answer = llm.choose(messages, ["Yes", "No"], ANSWER_TOKENS)
        if answer.probabilities is not None:
            return float(answer.probabilities[0]), answer.usage, True
        return float(parse_yes_no(answer.text)), answer.usage, False
    completion = llm.chat(messages, max_tokens=ANSWER_TOKENS)
    return float(parse_yes_no(completion.text)), completion.usage, False


def judged_scores(name: str, llm: ChatLLM, prompt: Prompt, explanation: str, shown: list[str], labels: list[bool],
                  parallel: int = 1, resamples: int = 1000) -> ScorerResult:
    """Balanced accuracy and AUROC of the judge's answers on `shown` texts against `labels`.

    Up to `parallel` examples are judged at once (an endpoint's own limit still caps what is in flight).
    A malformed answer drops that example (counted in details); transport failures propagate, and the
    feature's score is recorded as failed."""
    one_line = " ".join(explanation.split())
    conversations = [[{"role": "user", "content": prompt.render(explanation=one_line, example=text)}]
                     for text in shown]
    with ThreadPoolExecutor(max(1, parallel)) as pool:
        futures = [pool.submit(judge, llm, messages) for messages in conversations]
    answers, kept, usage, malformed, from_probabilities = [], [], Usage(), 0, 0
    for index, future in enumerate(futures):
        try:
            probability, cost, read = future.result()
        except MalformedAnswer:
            malformed += 1
            continue
        usage = usage + cost
        from_probabilities += read
        answers.append(probability)
        kept.append(labels[index])
    truth = np.asarray(kept, dtype=bool)
    if truth.all() or not truth.any():
        raise ScoreError(f"{name}: {malformed} of {len(shown)} answers were malformed; too few left to score")
    p_yes = np.asarray(answers)
    predictions = p_yes > 0.5

    def accuracy(weights: np.ndarray) -> np.ndarray:
        return weighted_balanced_accuracy(truth, predictions, weights)

    def ranking(weights: np.ndarray) -> np.ndarray:
        return weighted_auroc(truth, p_yes, weights)

    everything = np.ones((1, len(truth)))
    details = {"positives": int(truth.sum()), "negatives": int((~truth).sum()), "malformed": malformed,
               "probabilities": from_probabilities, "text_answers": len(truth) - from_probabilities}
    scores = [Score(name, metric, float(statistic(everything)[0]), len(truth),
                    *bootstrap_interval(statistic, len(truth), resamples), details)
              for metric, statistic in (("balanced_accuracy", accuracy), ("auroc", ranking))]
    return ScorerResult(scores, usage)
