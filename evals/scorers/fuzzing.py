"""Fuzzing: held-out activating excerpts are shown with tokens marked, either the truly activating ones or
as many random other tokens; the judge says whether the marks fit the explanation. It tests whether an
explanation pins down *which* tokens fire, which detection cannot. Works with any chat backend."""

import numpy as np

from evals.records import FeatureRecord, active_positions, marked_text
from evals.scorers.base import ScoreError, ScorerResult
from evals.scorers.judge import judge_prompt, judged_scores
from prompts import Prompt
from tools.llm.interface import ChatLLM


class FuzzingScorer:
    name = "fuzzing"

    def __init__(self, llm: ChatLLM, prompt: Prompt | None = None, seed: int = 0, parallel: int = 1, batch: int = 1):
        self.llm = llm
        self.parallel, self.batch = parallel, batch
        self.llm_name = llm.name
        self.prompt, self.prompt_hash = judge_prompt("fuzz", batch, prompt)
        self.seed = seed

    def score(self, explanation: str, record: FeatureRecord) -> ScorerResult:
        rng = np.random.default_rng([self.seed, record.feature])
        shown, labels = [], []
        for example in record.score_active:
            marked = active_positions(example)
            chosen = set(marked)
            others = [i for i in range(len(example.tokens)) if i not in chosen]
            if not marked or len(others) < len(marked):
                continue
            shown.append(marked_text(example, chosen))
            labels.append(True)
            shown.append(marked_text(example, set(rng.choice(others, len(marked), replace=False).tolist())))
            labels.append(False)
        if not shown:
            raise ScoreError("fuzzing needs held-out activating examples with tokens to mark")
        return judged_scores(self.name, self.llm, self.prompt, explanation, shown, labels, self.parallel,
                             batch=self.batch, seed=self.seed + record.feature)
