"""Yes/no judgments by an LLM over held-out examples: the machinery that detection and fuzzing share
(Paulo et al. 2024). Each example is judged in its own call, so a weak model never has to keep a
numbered list straight; a backend that gives token probabilities answers with P(yes) in one forward
pass, and an endpoint that sends the answer's top log-probabilities answers with P(yes) read from them,
which makes the AUROC more than a restatement of the accuracy. The details count which way each answer
was read."""

import hashlib
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from evals.scorers.base import Score, ScoreError, ScorerResult
from evals.stats import bootstrap_interval, weighted_auroc, weighted_balanced_accuracy
from prompts import Prompt, load_prompt
from tools.llm.interface import ChatLLM, ChoiceLLM, ListChoiceLLM, LLMError, Usage

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


def judge_choice(llm: ChatLLM, messages: list[dict], choices: list[str],
                 parse: Callable[[str], int]) -> tuple[np.ndarray, Usage, bool]:
    """The answer's distribution over `choices`: from token probabilities where the backend gives them for this
    answer, else all on the choice `parse` reads from the answer's text (it raises MalformedAnswer); and whether
    it came from probabilities."""
    if isinstance(llm, ChoiceLLM):
        answer = llm.choose(messages, choices, ANSWER_TOKENS)
        if answer.probabilities is not None:
            return np.asarray(answer.probabilities, dtype=np.float64), answer.usage, True
        text, usage = answer.text, answer.usage
    else:
        completion = llm.chat(messages, max_tokens=ANSWER_TOKENS)
        text, usage = completion.text, completion.usage
    return np.eye(len(choices))[parse(text)], usage, False


def judge_first(llm: ChatLLM, messages: list[dict], choices: list[str],
                parse: Callable[[str], bool]) -> tuple[float, Usage, bool]:
    """P(the first of two choices) (see `judge_choice`); `parse` says whether the text picked the first."""
    distribution, usage, read = judge_choice(llm, messages, choices, lambda text: 0 if parse(text) else 1)
    return float(distribution[0]), usage, read


def judge(llm: ChatLLM, messages: list[dict]) -> tuple[float, Usage, bool]:
    """P(yes), and whether it came from token probabilities."""
    return judge_first(llm, messages, ["Yes", "No"], parse_yes_no)


def judge_prompt(name: str, batch: int, given: Prompt | None = None) -> tuple[Prompt, str]:
    """The prompt a judge uses and the hash its scores are keyed by: `given` as it is, else the shipped
    one; the batched prompt's, with the batch size in it, when examples go several to a prompt (that
    changes what is measured)."""
    if given is not None:
        return given, given.sha256
    if batch <= 1:
        prompt = load_prompt(name)
        return prompt, prompt.sha256
    prompt = load_prompt(f"{name}_batch")
    return prompt, hashlib.sha256(f"{prompt.sha256}:{batch}".encode()).hexdigest()[:16]


def parse_digit_list(text: str, n: int) -> list[bool]:
    """[1, 0, 1] (or 1 0 1) with exactly n digits; MalformedAnswer otherwise."""
    listed = text[text.find("[") + 1:text.find("]")] if "[" in text and "]" in text else text
    digits = re.findall(r"\b[01]\b", listed)
    if len(digits) != n:
        raise MalformedAnswer(f"judge listed {len(digits)} answers for {n} excerpts: {text.strip()[:40]!r}")
    return [digit == "1" for digit in digits]


def judge_list(llm: ChatLLM, messages: list[dict], n: int) -> tuple[list[float], Usage, bool]:
    """P(yes) for each of the n excerpts of one prompt: from the digits' token probabilities where the
    backend gives them, else 1.0 or 0.0 from the listed answer."""
    max_tokens = 3 * n + 4
    if isinstance(llm, ListChoiceLLM):
        answer = llm.choose_each(messages, n, ["1", "0"], max_tokens)
        if answer.probabilities is not None:
            return [float(p) for p in answer.probabilities[:, 0]], answer.usage, True
        return [float(x) for x in parse_digit_list(answer.text, n)], answer.usage, False
    completion = llm.chat(messages, max_tokens=max_tokens)
    return [float(x) for x in parse_digit_list(completion.text, n)], completion.usage, False


def example_blocks(texts: list[str]) -> str:
    return "\n\n".join(f"<example {i}>\n{text}\n</example {i}>" for i, text in enumerate(texts, 1))


def judged_scores(name: str, llm: ChatLLM, prompt: Prompt, explanation: str, shown: list[str], labels: list[bool],
                  parallel: int = 1, resamples: int = 1000, batch: int = 1, seed: int = 0) -> ScorerResult:
    """Balanced accuracy and AUROC of the judge's answers on `shown` texts against `labels`.

    With `batch` 1 each example is its own prompt; above 1, examples go `batch` to a prompt in a seeded
    shuffled order (positives and negatives mixed, as delphi shows them) and the judge lists one digit
    each. Up to `parallel` prompts are judged at once (an endpoint's own limit still caps what is in
    flight). A malformed answer drops its examples (counted in details); transport failures propagate,
    and the feature's score is recorded as failed."""
    one_line = " ".join(explanation.split())
    if batch > 1:
        order = np.random.default_rng([seed, len(shown)]).permutation(len(shown)).tolist()
        groups = [order[start:start + batch] for start in range(0, len(order), batch)]
    else:
        groups = [[index] for index in range(len(shown))]

    def ask(group: list[int]) -> tuple[list[float], Usage, bool]:
        if batch == 1:
            content = prompt.render(explanation=one_line, example=shown[group[0]])
            probability, cost, read = judge(llm, [{"role": "user", "content": content}])
            return [probability], cost, read
        content = prompt.render(explanation=one_line, n=str(len(group)),
                                examples=example_blocks([shown[i] for i in group]))
        return judge_list(llm, [{"role": "user", "content": content}], len(group))

    def answered(group: list[int]) -> tuple[list[float], Usage, bool] | None:
        try:
            return ask(group)
        except MalformedAnswer:
            return None

    if parallel <= 1 or len(groups) == 1:  # many features in flight: a pool per feature only adds threads
        outcomes = [answered(group) for group in groups]
    else:
        with ThreadPoolExecutor(parallel) as pool:
            outcomes = list(pool.map(answered, groups))
    answers: list[float] = []
    kept: list[bool] = []
    usage, malformed, from_probabilities = Usage(), 0, 0
    for group, outcome in zip(groups, outcomes, strict=True):
        if outcome is None:
            malformed += len(group)
            continue
        probabilities, cost, read = outcome
        usage = usage + cost
        from_probabilities += read * len(group)
        answers.extend(probabilities)
        kept.extend(labels[index] for index in group)
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
    if batch > 1:
        details["examples_per_prompt"] = batch
    scores = [Score(name, metric, float(statistic(everything)[0]), len(truth),
                    *bootstrap_interval(statistic, len(truth), resamples), details)
              for metric, statistic in (("balanced_accuracy", accuracy), ("auroc", ranking))]
    return ScorerResult(scores, usage)
