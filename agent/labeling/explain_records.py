"""`interp explain-records FILE`: explain and score activation records from any other tool, with no subject
model and no catalog.

The file is JSON or JSONL. Each feature is an object with an id (`feature`, `index` or `id`) and its
records (`records` or `activations`), each record `{tokens: [str], values: [float]}` as OpenAI's
neuron-explainer, delphi and Neuronpedia write them; a bare list of records is one feature. Records
are split the way the catalog splits examples: by peak, alternately to explain and to score, so the
explainer never sees what scores it; records whose peak stays under a quarter of the feature's max are
the negatives and go to scoring only.
"""

import json
import math
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

from tqdm import tqdm

from agent.labeling.backends import Backends, LLMFactory, build_labeler
from agent.labeling.config import LabelConfig
from agent.labeling.rows import FeatureOutcome, label_feature
from agent.labeling.token_stats import CorpusCounts
from evals.records import NEGATIVE_FRACTION, ActivationRecord, FeatureRecord
from tools.errors import InterpError


def parse_record(raw, where: str) -> ActivationRecord:
    if not isinstance(raw, dict) or not isinstance(raw.get("tokens"), list) or not isinstance(raw.get("values"), list):
        raise InterpError(f"{where}: expected a record {{tokens: [str], values: [float]}}, got {str(raw)[:80]}")
    try:
        values = [float(v) for v in raw["values"]]
    except (TypeError, ValueError) as error:
        raise InterpError(f"{where}: {error}") from None
    bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
    if bad is not None:
        raise InterpError(f"{where} value {bad}: {values[bad]} is not a finite number; activations must be finite")
    try:
        return ActivationRecord([str(t) for t in raw["tokens"]], values)
    except ValueError as error:
        raise InterpError(f"{where}: {error}") from None


def read_features(path: Path) -> list[tuple[str, list[ActivationRecord]]]:
    if not path.is_file():
        raise InterpError(f"records file '{path}' does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InterpError(f"records file '{path}' is not UTF-8 text") from None
    try:
        items = json.loads(text)
        items = items if isinstance(items, list) else [items]
    except json.JSONDecodeError:
        try:
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as error:
            raise InterpError(f"'{path}' is neither JSON nor JSONL: {error}") from None
    if items and all(isinstance(item, dict) and "tokens" in item for item in items):
        items = [{"feature": path.stem, "records": items}]  # a bare list of records: one feature
    features = []
    for number, item in enumerate(items):
        if not isinstance(item, dict):
            raise InterpError(f"{path} item {number}: expected an object with records, got {str(item)[:80]}")
        name = str(next((item[key] for key in ("feature", "index", "id") if key in item), number))
        raw = item.get("records", item.get("activations"))
        if not isinstance(raw, list) or not raw:
            raise InterpError(f"{path} feature {name}: no 'records' (or 'activations') list")
        features.append((name, [parse_record(r, f"{path} feature {name} record {i}") for i, r in enumerate(raw)]))
    if not features:
        raise InterpError(f"'{path}' holds no features")
    return features


def split_records(number: int, records: list[ActivationRecord]) -> FeatureRecord:
    peak = max((r.max_value for r in records), default=0.0)
    ranked = sorted(records, key=lambda r: -r.max_value)
    is_active = [r.max_value > 0 and r.max_value >= NEGATIVE_FRACTION * peak for r in ranked]
    active = [r for r, keep in zip(ranked, is_active, strict=True) if keep]
    quiet = [r for r, keep in zip(ranked, is_active, strict=True) if not keep]
    return FeatureRecord(number, peak, active[0::2], [], active[1::2], quiet)


def explain_records(config: LabelConfig, path: Path, out: Path | None,
                    llm_factory: LLMFactory | None = None, progress: bool = False) -> list[dict]:
    """Rows shaped like Catalog.label_summary's, one per feature, also written to `out` as JSONL."""
    config.validate()
    features = read_features(path)
    corpus = CorpusCounts.from_windows(r.tokens for _, records in features for r in records)
    labeler = build_labeler(config, Backends(config, llm_factory), None, corpus)
    source = f"records:{path.name}"
    split = [split_records(number, records) for number, (_, records) in enumerate(features)]
    rows = []
    # Each feature's row is written (and flushed) as it finishes, so a crash or Ctrl-C keeps every finished one.
    with ThreadPoolExecutor(config.effective_concurrency()) as pool, \
            (out.open("w", encoding="utf-8") if out is not None else nullcontext()) as sink:
        outcomes = pool.map(lambda record: label_feature(labeler, record, source, "", None, labeler.scorers), split)
        for (name, _), outcome in tqdm(zip(features, outcomes, strict=True), total=len(features), unit="feature",
                                       disable=not progress, desc="explain"):
            rows.append(result_row(name, outcome))
            if sink is not None:
                sink.write(json.dumps(rows[-1]) + "\n")
                sink.flush()
    return rows


def result_row(name: str, outcome: FeatureOutcome) -> dict:
    explanation = outcome.explanation
    assert explanation is not None  # records are never labeled before, so every outcome explains
    return {"feature": name, "status": explanation["status"], "text": explanation["text"],
            "error": explanation["error"], "explainer": explanation["explainer"], "llm": explanation["llm"],
            "prompt_hash": explanation["prompt_hash"],
            "scores": [{key: score.get(key) for key in ("scorer", "metric", "value", "n", "ci_low", "ci_high",
                                                        "status", "error")} for score in outcome.scores],
            "prompt_tokens": outcome.usage.prompt_tokens,
            "completion_tokens": outcome.usage.completion_tokens}
