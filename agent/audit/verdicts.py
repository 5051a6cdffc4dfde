"""What an audit concludes, per concept and per candidate feature, and the records the report is drawn from.

Verdict rules (kept simple so a reader can check them against the numbers):
- concept: "represented" when the probe beats shuffled labels (permutation p < 0.05), its interval lies
  above chance and its AUROC is at least 0.8; "weakly represented" without the last; else "not found".
- candidate: it fires with the concept when (1) its activation AUROC on all texts is at least 0.75 and
  above what the best of all features reaches by chance (the 95th percentile of the highest per-feature
  AUROC over label permutations: with 2,048 features on 24 texts that is about 0.76, so an uncorrected
  0.75 means nothing), and (2) on the half of the texts it was not chosen on, its AUROC is at least 0.75
  with permutation p < 0.05. "carries the concept" when it also moves the held-out readout by at least
  10% of the gap (ablating or steering), with the interval's low end above zero, which is measured only
  where that gap is itself significant; "fires with the concept" when only (1) and (2) hold; "label
  only" when only its explanation matches; otherwise "no evidence".
"""

from dataclasses import dataclass, field

import numpy as np

from agent.audit.concepts import Concept
from agent.audit.signal import Gap, Separation

ACTIVE_AUROC = 0.75
CAUSAL_SHARE = 0.1
SIGNIFICANCE = 0.05


@dataclass
class Candidate:
    feature: int
    found_by: list[str]
    explanation: str | None
    explanation_scores: dict[str, float]
    """The explanation's own scores (simulation, detection, ...), from the label run that wrote it."""
    similarity: float | None
    activation_auroc: float
    alignment: float
    family_p: float = 1.0
    """Share of label permutations in which some feature's AUROC reaches this one's (family-wise)."""
    held_out_auroc: float | None = None
    held_out_p: float | None = None
    """AUROC and permutation p on the half of the texts the candidate was not chosen on."""
    ablation: float | None = None
    steering: float | None = None
    ablation_ci: tuple[float, float] | None = None
    steering_ci: tuple[float, float] | None = None
    confidence: float = 0.0
    verdict: str = ""
    top_examples: list[dict] = field(default_factory=list)
    """A few cataloged top examples: {'tokens', 'values'} for the report's highlighted text."""


@dataclass
class ConceptAudit:
    concept: Concept
    positive: list[str]
    negative: list[str]
    texts_by: str
    """'file', or the LLM that wrote the missing examples."""
    probe: Separation
    mean_difference: Separation
    verdict: str
    candidates: list[Candidate]
    chance_auroc: float = 0.5
    """The 95th percentile of the best per-feature AUROC under shuffled labels: the bar to fire above."""
    n_choose: int = 0
    n_confirm: int = 0
    """Texts in the half candidates were chosen on, and in the half they were confirmed on."""
    smallest_p: float = 0.0
    """The smallest permutation p the confirming half allows: at or above 0.05 nothing can be confirmed."""
    gap: Gap | None = None
    """The readout's held-out positive-negative gap; causal effects are measured only when it is significant."""
    confounds: dict[str, float] = field(default_factory=dict)
    """AUROC of each surface measure (length, punctuation, ...) between positive and negative texts."""
    positive_peaks: dict[int, list[float]] = field(default_factory=dict)
    negative_peaks: dict[int, list[float]] = field(default_factory=dict)


def fires(candidate: Candidate, chance_auroc: float) -> bool:
    """Above the family-wise bar on all texts, and confirmed on the texts it was not chosen on."""
    return candidate.activation_auroc >= ACTIVE_AUROC and candidate.family_p < SIGNIFICANCE and \
        candidate.activation_auroc > chance_auroc and candidate.held_out_auroc is not None and \
        candidate.held_out_auroc >= ACTIVE_AUROC and candidate.held_out_p is not None and \
        candidate.held_out_p < SIGNIFICANCE


def moves_readout(candidate: Candidate) -> bool:
    """Ablating or steering moves the held-out readout by a tenth of its gap, the interval clear of zero."""
    return any(value is not None and value >= CAUSAL_SHARE and interval is not None and interval[0] > 0
               for value, interval in ((candidate.ablation, candidate.ablation_ci),
                                       (candidate.steering, candidate.steering_ci)))


def candidate_verdict(candidate: Candidate, chance_auroc: float = 0.5) -> tuple[str, float]:
    causal = [value for value in (candidate.ablation, candidate.steering) if value is not None and value == value]
    parts = [(0.4, float(np.clip((min(candidate.activation_auroc, candidate.held_out_auroc or 0.5) - 0.5) * 2,
                                 0, 1)))]
    if candidate.similarity is not None:
        parts.append((0.2, float(np.clip((candidate.similarity - 0.2) / 0.4, 0, 1))))
    if causal:
        parts.append((0.4, float(np.clip(max(causal), 0, 1))))
    confidence = sum(w * v for w, v in parts) / sum(w for w, _ in parts)
    if fires(candidate, chance_auroc):
        return ("carries the concept" if moves_readout(candidate) else "fires with the concept"), confidence
    if candidate.similarity is not None and candidate.similarity >= 0.5:
        return "label only", confidence
    return "no evidence", confidence


def concept_verdict(probe) -> str:
    if probe.p_value < SIGNIFICANCE and probe.ci_low > 0.5 and probe.auroc >= 0.8:
        return "represented"
    if probe.p_value < SIGNIFICANCE and probe.ci_low > 0.5:
        return "weakly represented"
    return "not found"
