"""Intervention scoring (Paulo et al. 2024): does the explanation predict what the feature *does*? For held-out
corpus prompts the model continues each twice, as it is and with the feature turned up (calibrated to the
feature's own scale, `tools/experiments/steering.py`); the judge, given the explanation, says which
continuation the feature shaped. An explanation of what a feature reads can score well on detection and
at chance here, and the reverse: the two sides of a feature are scored apart.

Per prompt the steered continuation is shown first or second at random (seeded by the feature), so a judge
that always answers "1" is at chance. Where the judge's backend gives token probabilities, P(each answer) is
read from them. AUROC: over every continuation, the steered ones positive, scored by the judge's P that each
is the steered one; balanced accuracy: how often it picked the steered one. Intervals resample prompts.
Prompts whose continuation steering did not change are left out (the judge could only guess); they are
counted in the details. The same judge is also asked with no explanation (`baseline_auroc` in the
details): steered text is often recognizably odd, and a weak judge picks it whatever it is told, so a
score means something only above that baseline."""

import hashlib
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from evals.records import FeatureRecord
from evals.scorers.base import Score, ScoreError, ScorerResult
from evals.scorers.judge import MalformedAnswer, judge_first
from evals.stats import bootstrap_interval, weighted_auroc, weighted_balanced_accuracy
from prompts import Prompt, load_prompt
from tools.experiments.steering import Continuation, Steerer, steer_strength
from tools.llm.interface import ChatLLM, Usage

PROMPTS = 8
NO_EXPLANATION = "(none given: judge from the continuations alone)"
"""What the judge is told for the baseline: how often it finds the steered continuation without an
explanation, because steered text is odd. A weak judge's score is read against it."""
PROMPT_TOKENS = 12
"""Each held-out random window's first tokens are a prompt: ordinary corpus text, no feature in mind."""


def parse_one_or_two(text: str) -> bool:
    """Whether the answer names continuation 1 (its first 1 or 2)."""
    digits = re.findall(r"\b[12]\b", text)
    if not digits:
        raise MalformedAnswer(f"judge answered {text.strip()[:40]!r}, expected 1 or 2")
    return digits[0] == "1"


def which(llm: ChatLLM, messages: list[dict]) -> tuple[float, Usage, bool]:
    """P(the answer is "1") and whether it came from token probabilities."""
    return judge_first(llm, messages, ["1", "2"], parse_one_or_two)


class InterventionScorer:
    name = "intervention"

    def __init__(self, llm: ChatLLM, steerer: Steerer, prompt: Prompt | None = None, prompts: int = PROMPTS,
                 parallel: int = 1):
        self.llm, self.steerer = llm, steerer
        self.llm_name = llm.name
        self.prompts, self.parallel = prompts, parallel
        self.prompt = prompt or load_prompt("intervene")
        # What is measured also depends on how hard and how long the feature is steered, and on how many prompts.
        setting = (f"{self.prompt.sha256}:{NO_EXPLANATION}:{steer_strength(1.0)}:{steerer.max_new_tokens}:{prompts}:"
                   f"{PROMPT_TOKENS}")
        self.prompt_hash = hashlib.sha256(setting.encode()).hexdigest()[:16]

    def corpus_prompts(self, record: FeatureRecord) -> list[str]:
        texts = ["".join(r.tokens[:PROMPT_TOKENS]).strip() for r in record.score_random]
        return [text for text in dict.fromkeys(texts) if text][:self.prompts]

    def score(self, explanation: str, record: FeatureRecord) -> ScorerResult:
        prompts = self.corpus_prompts(record)
        if len(prompts) < 2:
            raise ScoreError(f"intervention needs at least 2 held-out corpus prompts, got {len(prompts)}")
        strength = steer_strength(record.max_act)
        pairs = [pair for pair in self.steerer.continuations(record.feature, prompts, strength) if pair.changed]
        unchanged = len(prompts) - len(pairs)
        if len(pairs) < 2:
            raise ScoreError(f"intervention: steering feature {record.feature} at {strength:g} changed "
                             f"{len(pairs)} of {len(prompts)} continuations; too few to judge")
        steered_first = np.random.default_rng([record.feature, len(pairs)]).integers(0, 2, len(pairs)).astype(bool)

        def judged(text: str) -> tuple[dict[int, float], Usage, int, int]:
            """P(the steered one) per prompt whose answer could be read, the cost, malformed and
            probability-read counts, for the judge told `text`."""
            one_line = " ".join(text.split())

            def ask(index: int) -> tuple[float, Usage, bool]:
                pair: Continuation = pairs[index]
                first, second = (pair.steered, pair.clean) if steered_first[index] else (pair.clean, pair.steered)
                content = self.prompt.render(explanation=one_line, prompt=pair.prompt, first=first, second=second)
                return which(self.llm, [{"role": "user", "content": content}])

            with ThreadPoolExecutor(max(1, self.parallel)) as pool:
                futures = [pool.submit(ask, index) for index in range(len(pairs))]
            read_answers, cost, malformed, from_probabilities = {}, Usage(), 0, 0
            for index, future in enumerate(futures):
                try:
                    p_first, used, by_probability = future.result()
                except MalformedAnswer:
                    malformed += 1
                    continue
                cost = cost + used
                from_probabilities += by_probability
                read_answers[index] = p_first if steered_first[index] else 1 - p_first
            return read_answers, cost, malformed, from_probabilities

        answers, usage, malformed, from_probabilities = judged(explanation)
        baseline, baseline_usage, _, _ = judged(NO_EXPLANATION)
        usage = usage + baseline_usage
        kept = sorted(answers)
        if len(kept) < 2:
            raise ScoreError(f"intervention: {malformed} of {len(pairs)} answers were malformed; too few left")

        def metrics(chosen: np.ndarray) -> tuple[Callable, Callable]:
            """Balanced accuracy and AUROC of P(steered) per prompt, as statistics of prompt weights."""
            # Every prompt gives two continuations: the steered one (positive) and the clean one.
            truth = np.concatenate([np.ones(len(chosen), bool), np.zeros(len(chosen), bool)])
            scores = np.concatenate([chosen, 1 - chosen])

            def items(weights: np.ndarray) -> np.ndarray:
                return np.concatenate([weights, weights], axis=1)  # a prompt's weight on both its continuations

            return (lambda weights: weighted_balanced_accuracy(truth, scores > 0.5, items(weights)),
                    lambda weights: weighted_auroc(truth, scores, items(weights)))

        accuracy, ranking = metrics(np.array([answers[i] for i in kept]))
        everything = np.ones((1, len(kept)))
        both = [i for i in kept if i in baseline]
        reference = {}
        if len(both) >= 2:  # the same judge with no explanation, on the prompts both answers were read for
            base_accuracy, base_ranking = metrics(np.array([baseline[i] for i in both]))
            everything_both = np.ones((1, len(both)))
            reference = {"baseline_balanced_accuracy": float(base_accuracy(everything_both)[0]),
                         "baseline_auroc": float(base_ranking(everything_both)[0]), "baseline_prompts": len(both)}
        details = {"prompts": len(kept), "unchanged": unchanged, "malformed": malformed, "strength": strength,
                   "probabilities": from_probabilities, "text_answers": len(kept) - from_probabilities} | reference
        return ScorerResult([Score(self.name, metric, float(statistic(everything)[0]), len(kept),
                                   *bootstrap_interval(statistic, len(kept)), details)
                             for metric, statistic in (("balanced_accuracy", accuracy), ("auroc", ranking))], usage)
