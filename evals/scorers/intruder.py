"""Intruder detection (Juang et al. 2025, "Evaluating SAE interpretability without explanations"; delphi's
IntruderScorer): a judge sees several held-out activating excerpts of the feature, their activating tokens
marked, and one intruder, a non-activating window of the feature with as many tokens marked at random, and
names the intruder. It needs no explanation: it asks whether the feature's activations are coherent enough
to tell apart, so it scores the feature, and every label of that feature gets the same score.

Each round's answer is read from the first answer token's probabilities over the excerpt numbers where the
backend gives them (as the other judges do), else from the answer's text. `accuracy` is the share of rounds
whose most likely answer is the intruder, `p_intruder` the mean probability put on it; chance is 1/shown
for both, in the details with the count of rounds read each way."""

import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from evals.records import ActivationRecord, FeatureRecord, active_positions, marked_text
from evals.scorers.base import Score, ScoreError, ScorerResult
from evals.scorers.judge import MalformedAnswer, example_blocks, judge_choice
from evals.stats import bootstrap_interval
from prompts import Prompt, load_prompt
from tools.llm.interface import ChatLLM, Usage

ROUNDS = 10
SHOWN = 5
"""Excerpts per round, the intruder among them: delphi's default; chance is 1/5."""


def parse_number(text: str, n: int) -> int:
    """The 0-based excerpt an answer names ("3", "Example 3", "[3]"); MalformedAnswer otherwise."""
    numbers = re.findall(r"\d+", text)
    if not numbers or not 1 <= int(numbers[0]) <= n:
        raise MalformedAnswer(f"judge answered {text.strip()[:40]!r}, expected an excerpt number from 1 to {n}")
    return int(numbers[0]) - 1


def marked_at_random(record: ActivationRecord, k: int, rng: np.random.Generator) -> str:
    """The record with k of its tokens marked at random: an intruder marked like the activating excerpts."""
    k = max(1, min(k, len(record.tokens)))
    return marked_text(record, set(rng.choice(len(record.tokens), k, replace=False).tolist()))


class IntruderScorer:
    name = "intruder"

    def __init__(self, llm: ChatLLM, prompt: Prompt | None = None, seed: int = 0, rounds: int = ROUNDS,
                 shown: int = SHOWN, parallel: int = 1):
        if not 2 <= shown <= 9:
            raise ValueError(f"shown={shown}: an intruder round shows 2 to 9 excerpts (one-digit answers)")
        self.llm, self.llm_name = llm, llm.name
        self.prompt = prompt or load_prompt("intruder")
        self.prompt_hash = self.prompt.sha256
        self.seed, self.rounds, self.shown, self.parallel = seed, rounds, shown, parallel

    def score(self, explanation: str, record: FeatureRecord) -> ScorerResult:
        """`explanation` is not shown: the intruder scores the feature, not what anyone said about it."""
        positives = [r for r in record.score_active if active_positions(r)]
        intruders = [r for r in record.score_negatives if r.tokens]
        if len(positives) < self.shown - 1 or not intruders:
            raise ScoreError(f"intruder needs {self.shown - 1} held-out activating excerpts and one non-activating "
                             f"window, got {len(positives)} and {len(intruders)}")
        rng = np.random.default_rng([self.seed, record.feature])
        rounds = []
        for _ in range(self.rounds):
            chosen = [positives[i] for i in rng.choice(len(positives), self.shown - 1, replace=False)]
            texts = [marked_text(r, set(active_positions(r))) for r in chosen]
            intruder = intruders[int(rng.integers(len(intruders)))]
            slot = int(rng.integers(self.shown))
            texts.insert(slot, marked_at_random(intruder, len(active_positions(chosen[0])), rng))
            rounds.append((texts, slot))
        if self.parallel > 1:
            with ThreadPoolExecutor(self.parallel) as pool:
                answers = list(pool.map(self.ask, [texts for texts, _ in rounds]))
        else:
            answers = [self.ask(texts) for texts, _ in rounds]
        return self.scored([slot for _, slot in rounds], answers)

    def ask(self, texts: list[str]) -> tuple[np.ndarray, Usage, bool] | None:
        """P(each excerpt is the intruder), what it cost, and whether it came from token probabilities; None
        for an answer that names no excerpt."""
        n = len(texts)
        messages = [{"role": "user", "content": self.prompt.render(n=str(n), examples=example_blocks(texts))}]
        try:
            return judge_choice(self.llm, messages, [str(i) for i in range(1, n + 1)],
                                lambda text: parse_number(text, n))
        except MalformedAnswer:
            return None

    def scored(self, slots: list[int], answers: list[tuple[np.ndarray, Usage, bool] | None]) -> ScorerResult:
        correct, p_intruder, usage, read, malformed = [], [], Usage(), 0, 0
        for slot, answer in zip(slots, answers, strict=True):
            if answer is None:
                malformed += 1
                continue
            probabilities, cost, from_probabilities = answer
            correct.append(float(int(np.argmax(probabilities)) == slot))
            p_intruder.append(float(probabilities[slot]))
            usage, read = usage + cost, read + from_probabilities
        if not correct:
            raise ScoreError(f"intruder: all {malformed} answers named no excerpt")
        details = {"chance": 1 / self.shown, "shown": self.shown, "rounds": len(correct), "malformed": malformed,
                   "probabilities": read, "text_answers": len(correct) - read}
        scores = []
        for metric, values in (("accuracy", np.asarray(correct)), ("p_intruder", np.asarray(p_intruder))):
            def mean(counts: np.ndarray, values: np.ndarray = values) -> np.ndarray:
                return counts @ values / counts.sum(axis=1)

            scores.append(Score(self.name, metric, float(values.mean()), len(values),
                                *bootstrap_interval(mean, len(values)), details))
        return ScorerResult(scores, usage)
