"""Is a Neuronpedia source the same features as a feature set of ours? Its `activations*/` rows are each
feature's values on Neuronpedia's own text: run our model and features on that text and compare.

An import trusts the user's `--feature-set` only this far: index ranges match by construction, but a
different SAE (or layer, or model revision) of the same width would import silently and every score
would then be about the wrong latent. The comparison reads a few dozen rows spread over the imported
features; a row whose text our tokenizer splits differently from theirs, or that holds a special token
past its first (a document boundary), is passed over (values are per token, so they only line up token
for token, in the same context). Their values come from their precision (often bf16 on a
GPU) and ours from ours (the embedded model is 4-bit), so agreement is a correlation, not equality.
"""

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from evals.stats import pearson
from tools.errors import InterpError

CHECK_ROWS = 32
AGREE = 0.9
"""At or above: the same features."""
DISAGREE = 0.5
"""Below: not the same features; the import is refused."""


@dataclass(frozen=True)
class TheirActivation:
    feature: int
    tokens: list[str]
    values: list[float]


@dataclass(frozen=True)
class Agreement:
    rows: int
    """Rows compared."""
    tokens: int
    pearson: float | None
    passed_over: int
    """Rows our tokenizer splits differently."""

    def describe(self) -> str:
        if self.pearson is None:
            return (f"their activations could not be compared ({self.passed_over} rows read, none tokenized the "
                    "same here)")
        return (f"their activations agree with ours at r = {self.pearson:.3f} over {self.tokens:,} tokens of "
                f"{self.rows} examples" + (f" ({self.passed_over} passed over: tokenized differently)"
                                          if self.passed_over else ""))


def activation_files(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob("activations*/batch-*.jsonl.gz"))


def read_their_activations(files: list[Path], features: set[int], limit: int = CHECK_ROWS) -> list[TheirActivation]:
    """Up to `limit` rows of the imported features, one a feature before a second, in file order."""
    chosen: list[TheirActivation] = []
    seconds: list[TheirActivation] = []
    seen: set[int] = set()
    for path in files:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if len(chosen) >= limit:
                    return chosen
                try:
                    row = json.loads(line)
                    feature, tokens, values = int(str(row["index"])), row["tokens"], row["values"]
                except (ValueError, KeyError, TypeError):
                    raise InterpError(f"{path.name}:{number}: expected a Neuronpedia Activation row with 'index', "
                                      "'tokens' and 'values'") from None
                if feature not in features or len(tokens) != len(values) or not tokens:
                    continue
                entry = TheirActivation(feature, [str(t) for t in tokens], [float(v) for v in values])
                (seconds if feature in seen else chosen).append(entry)
                seen.add(feature)
    return (chosen + seconds)[:limit]


def compare(subject, source, rows: list[TheirActivation]) -> Agreement:
    """Pearson r between their values and ours, token for token, over every row that tokenizes the same."""
    from tools.experiments.interventions import feature_on_text

    special = set(subject.tokenizer.all_special_tokens)
    special_ids = set(subject.tokenizer.all_special_ids)
    theirs: list[float] = []
    ours: list[float] = []
    compared = 0
    for row in rows:
        kept = list(zip(row.tokens, row.values, strict=True))
        if kept and kept[0][0] == subject.tokenizer.bos_token:
            kept = kept[1:]  # ours starts with BOS too (encode_text)
        if not kept or any(token in special for token, _ in kept):
            continue  # a document boundary inside the window: a context we cannot rebuild from text
        tokens, values = feature_on_text(subject, source, row.feature, "".join(token for token, _ in kept),
                                         special_ids)
        if tokens != [token for token, _ in kept]:
            continue
        ours += values
        theirs += [value for _, value in kept]
        compared += 1
    return Agreement(compared, len(ours), pearson(theirs, ours) if compared else None, len(rows) - compared)


def check_same_features(agreement: Agreement, source_name: str, set_id: str) -> None:
    if agreement.pearson is not None and agreement.pearson < DISAGREE:
        raise InterpError(f"Neuronpedia source {source_name} is not the features of {set_id}: "
                          f"{agreement.describe()}; import into the feature set of the same model and SAE, or pass "
                          "--no-activation-check")
