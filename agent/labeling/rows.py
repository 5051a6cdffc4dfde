"""One feature's labeling as catalog rows: explain, score, and turn every result (or failure) into a row."""

import json
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from agent.labeling.backends import Labeler
from evals.records import FeatureRecord
from evals.scorers.base import Scorer
from evals.scorers.embedding import Embedder
from tools.errors import FeatureFailure
from tools.llm.interface import Usage


class Named(Protocol):
    """What keys an explanation: whoever wrote it (an explainer, an investigation), its LLM and prompt."""

    @property
    def name(self) -> str: ...
    @property
    def llm_name(self) -> str: ...
    @property
    def prompt_hash(self) -> str: ...


@dataclass
class FeatureOutcome:
    feature: int
    explanation: dict | None
    """The new explanations row, or None when an earlier run's explanation was reused."""
    scores: list[dict] = field(default_factory=list)
    usage: Usage = Usage()


def explanation_row(explainer: Named, embedder: Embedder, set_id: str, feature: int, run_id: str,
                    text: str | None, error: str | None, usage: Usage, embed: bool = True) -> dict:
    """An explanations row, keyed by the explainer's name, LLM and prompt hash; with `embed` False its
    embedding is left for `embed_explanations`, which embeds many features' explanations in one batch."""
    embedding = embedder.embed([text])[0].tolist() if text and embed else None
    return {"explanation_id": uuid.uuid4().hex[:16], "feature_set_id": set_id, "feature": feature,
            "explainer": explainer.name, "llm": explainer.llm_name, "prompt_hash": explainer.prompt_hash,
            "status": "ok" if text else "failed", "text": text, "error": error,
            "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "embedding": embedding, "embedder": embedder.name if text else None, "run_id": run_id}


def score_rows(scorer: Scorer, explanation: str, record: FeatureRecord, explanation_id: str,
               run_id: str) -> tuple[list[dict], Usage]:
    base = {"explanation_id": explanation_id, "scorer": scorer.name, "llm": scorer.llm_name,
            "prompt_hash": scorer.prompt_hash, "run_id": run_id}
    try:
        result = scorer.score(explanation, record)
    except FeatureFailure as failure:
        return [base | {"metric": "", "status": "failed", "error": str(failure), "prompt_tokens": 0,
                        "completion_tokens": 0}], Usage()
    rows = []
    for index, score in enumerate(result.scores):
        # The scorer's token cost goes on its first row, so summing a column never counts it twice.
        cost = result.usage if index == 0 else Usage()
        rows.append(base | {"metric": score.metric, "status": "ok", "value": score.value, "n": score.n,
                            "ci_low": score.ci_low, "ci_high": score.ci_high, "details": json.dumps(score.details),
                            "prompt_tokens": cost.prompt_tokens, "completion_tokens": cost.completion_tokens})
    return rows, result.usage


def embed_explanations(outcomes: list[FeatureOutcome], embedder: Embedder) -> None:
    """Fills the embeddings `label_feature` left out, all in one batch: one forward pass for every feature
    that finished together costs a fraction of one pass each."""
    rows = [o.explanation for o in outcomes if o.explanation and o.explanation["text"] and
            o.explanation["embedding"] is None]
    for row, vector in zip(rows, embedder.embed([row["text"] for row in rows]) if rows else [], strict=True):
        row["embedding"] = vector.tolist()


def label_feature(labeler: Labeler, record: FeatureRecord, set_id: str, run_id: str, previous: dict | None,
                  scorers: list[Scorer]) -> FeatureOutcome:
    """Explain (unless `previous` already did) and run `scorers`; failures become rows, not exceptions."""
    if previous is None:
        def new_row(text: str | None, error: str | None, usage: Usage) -> dict:
            return explanation_row(labeler.explainer, labeler.embedder, set_id, record.feature, run_id, text, error,
                                   usage, embed=False)

        try:
            explanation = labeler.explainer.explain(record)
        except FeatureFailure as failure:
            return FeatureOutcome(record.feature, new_row(None, str(failure), Usage()))
        row = new_row(explanation.text, None, explanation.usage)
        outcome = FeatureOutcome(record.feature, row, usage=explanation.usage)
        explanation_id, text = row["explanation_id"], explanation.text
    else:
        outcome = FeatureOutcome(record.feature, None)
        explanation_id, text = previous["explanation_id"], previous["text"]
    for scorer in scorers:
        rows, usage = score_rows(scorer, text, record, explanation_id, run_id)
        outcome.scores.extend(rows)
        outcome.usage = outcome.usage + usage
    return outcome
