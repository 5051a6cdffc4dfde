"""What every scorer returns, and the one method a scorer has."""

from dataclasses import dataclass, field
from typing import Protocol

from evals.records import FeatureRecord
from tools.errors import FeatureFailure
from tools.llm.interface import Usage


class ScoreError(FeatureFailure):
    """A scorer that cannot score this feature (no negatives, every answer malformed): recorded, not fatal."""


@dataclass(frozen=True)
class Score:
    scorer: str
    metric: str
    """pearson | balanced_accuracy | auroc | accuracy | p_intruder"""
    value: float
    n: int
    """Held-out examples the value rests on."""
    ci_low: float
    ci_high: float
    """95% bootstrap interval over examples."""
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ScorerResult:
    scores: list[Score]
    usage: Usage


class Scorer(Protocol):
    name: str
    llm_name: str
    """'' for scorers that call no LLM."""
    prompt_hash: str

    def score(self, explanation: str, record: FeatureRecord) -> ScorerResult: ...
