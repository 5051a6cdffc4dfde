"""Detection: given the explanation, can a judge tell held-out activating excerpts from non-activating
ones? Works with any chat backend."""

from evals.records import FeatureRecord, display_token
from evals.scorers.base import ScoreError, ScorerResult
from evals.scorers.judge import judge_prompt, judged_scores
from prompts import Prompt
from tools.llm.interface import ChatLLM


class DetectionScorer:
    name = "detection"

    def __init__(self, llm: ChatLLM, prompt: Prompt | None = None, parallel: int = 1, batch: int = 1):
        self.llm = llm
        self.parallel, self.batch = parallel, batch
        self.llm_name = llm.name
        self.prompt, self.prompt_hash = judge_prompt("detect", batch, prompt)

    def score(self, explanation: str, record: FeatureRecord) -> ScorerResult:
        positives, negatives = record.score_active, record.score_negatives
        if not positives or not negatives:
            raise ScoreError(f"detection needs held-out activating and non-activating examples, got "
                             f"{len(positives)} and {len(negatives)}")
        shown = ["".join(display_token(t) for t in r.tokens) for r in positives + negatives]
        labels = [True] * len(positives) + [False] * len(negatives)
        return judged_scores(self.name, self.llm, self.prompt, explanation, shown, labels, self.parallel,
                             batch=self.batch, seed=record.feature)
