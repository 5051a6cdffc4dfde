"""`interp export --format neuronpedia-upload`: a feature set as the JSON bodies of Neuronpedia's public
`POST /api/feature/upload-batch`, each checked against the route's rules before it is written.

The rules are the route's yup schema and its checks after it (read at mitre/neuronpedia, a fork carrying
hijohnnylin/neuronpedia's `apps/webapp/app/api/feature/upload-batch/route.tsx`, commit 00aa0a19):

    {modelId, source, features: 1..128 of {index: integer 0..10,000,000, density?: 0..1,
     topLogits?/bottomLogits?: <= 20 of {token, value}, explanations?: [{text: 1..512 chars, methodName?,
     modelName?}], activations: >= 1 of {tokens: 1..1024 strings, values: as many numbers,
     quantileMin?/quantileMax?: <= 99,999,999, quantileFraction?: 0..1}}}

plus: indexes unique within a body, and every methodName / modelName an existing ExplanationType /
ExplanationModelType (checked by the server, which lists the valid ones when it refuses). yup's
`string().required()` refuses an empty string, so an empty token is sent as EMPTY_TOKEN.

A feature that never fired has no activation to send (the route requires one) and is left out; the
manifest counts it.
"""

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.export import require_empty, require_labels
from agent.neuronpedia.names import IMPORTED, explanation_type, llm_type_name
from tools.catalog import Catalog
from tools.errors import InterpError

MAX_FEATURES = 128
MAX_INDEX = 10_000_000
MAX_LOGITS = 20
MAX_TEXT = 512
MAX_TOKENS = 1024
MAX_QUANTILE = 99_999_999
MAX_BODY_BYTES = 4_000_000
"""Bodies are also cut by size: 128 features of long windows can reach tens of MB, more than a proxy
in front of the route is likely to take."""
EMPTY_TOKEN = "\u2205"
MANIFEST = "manifest.json"

Logits = Callable[[int], tuple[list[dict], list[dict]]]
"""A feature's (topLogits, bottomLogits): the tokens its direct logit effect raises and lowers most."""


class BodyError(InterpError):
    """A body the route would refuse; the message names the field and the rule."""


def _check(condition: bool, where: str, what: str) -> None:
    if not condition:
        raise BodyError(f"{where}: {what}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _name(value: Any, where: str) -> None:
    _check(value is None or (isinstance(value, str) and value != "" and value == value.lower()), where,
           f"{value!r} must be a non-empty lower-case string or null (the route lower-cases it and looks it up)")


def _logits(entries: Any, where: str) -> None:
    if entries is None:
        return
    _check(isinstance(entries, list) and len(entries) <= MAX_LOGITS, where, f"must be a list of at most "
           f"{MAX_LOGITS} {{token, value}}")
    for j, entry in enumerate(entries):
        _check(isinstance(entry, dict) and isinstance(entry.get("token"), str) and entry["token"] != ""
               and _number(entry.get("value")), f"{where}[{j}]", f"{entry!r} must be {{token: non-empty string, "
               "value: number}")


def _activation(activation: Any, where: str) -> None:
    _check(isinstance(activation, dict), where, "must be an object with tokens and values")
    tokens, values = activation.get("tokens"), activation.get("values")
    _check(isinstance(tokens, list) and 1 <= len(tokens) <= MAX_TOKENS, f"{where}.tokens",
           f"must be a list of 1 to {MAX_TOKENS} tokens")
    _check(isinstance(values, list) and 1 <= len(values) <= MAX_TOKENS, f"{where}.values",
           f"must be a list of 1 to {MAX_TOKENS} numbers")
    _check(len(tokens) == len(values), where,
           f"{len(tokens)} tokens but {len(values)} values; they must match")
    for j, token in enumerate(tokens):
        _check(isinstance(token, str) and token != "", f"{where}.tokens[{j}]", f"{token!r} must be a non-empty string")
    for j, value in enumerate(values):
        _check(_number(value), f"{where}.values[{j}]", f"{value!r} must be a finite number")
    for key in ("quantileMin", "quantileMax"):
        value = activation.get(key)
        _check(value is None or (_number(value) and value <= MAX_QUANTILE), f"{where}.{key}",
               f"{value!r} must be a number at most {MAX_QUANTILE:,} or null")
    fraction = activation.get("quantileFraction")
    _check(fraction is None or (_number(fraction) and 0 <= fraction <= 1), f"{where}.quantileFraction",
           f"{fraction!r} must be in [0, 1] or null")


def validate_body(body: Any, where: str = "body") -> None:
    """Raise BodyError (one line: the field, the value, the rule) for a body the route would refuse."""
    _check(isinstance(body, dict), where, "must be a JSON object with modelId, source and features")
    for key in ("modelId", "source"):
        value = body.get(key)
        _check(isinstance(value, str) and value != "" and value == value.lower(), f"{where}.{key}",
               f"{value!r} must be a non-empty lower-case string")
    features = body.get("features")
    _check(isinstance(features, list) and 1 <= len(features) <= MAX_FEATURES, f"{where}.features",
           f"must be a list of 1 to {MAX_FEATURES} features")
    seen: set[int] = set()
    for i, feature in enumerate(features):
        at = f"{where}.features[{i}]"
        _check(isinstance(feature, dict), at, "must be an object")
        index = feature.get("index")
        _check(isinstance(index, int) and not isinstance(index, bool) and 0 <= index <= MAX_INDEX, f"{at}.index",
               f"{index!r} must be an integer in [0, {MAX_INDEX:,}]")
        _check(index not in seen, f"{at}.index", f"{index} appears twice; indexes must be unique within a body")
        seen.add(index)
        density = feature.get("density")
        _check(density is None or (_number(density) and 0 <= density <= 1), f"{at}.density",
               f"{density!r} must be in [0, 1]")
        _logits(feature.get("topLogits"), f"{at}.topLogits")
        _logits(feature.get("bottomLogits"), f"{at}.bottomLogits")
        explanations = feature.get("explanations")
        _check(explanations is None or isinstance(explanations, list), f"{at}.explanations", "must be a list")
        for j, explanation in enumerate(explanations or []):
            text = explanation.get("text") if isinstance(explanation, dict) else None
            length = f"{len(text)} characters" if isinstance(text, str) else repr(text)
            _check(isinstance(text, str) and 1 <= len(text) <= MAX_TEXT, f"{at}.explanations[{j}].text",
                   f"must be a string of 1 to {MAX_TEXT} characters, not {length}")
            _name(explanation.get("methodName"), f"{at}.explanations[{j}].methodName")
            _name(explanation.get("modelName"), f"{at}.explanations[{j}].modelName")
        activations = feature.get("activations")
        _check(isinstance(activations, list) and len(activations) >= 1, f"{at}.activations",
               "must be a list of at least one activation")
        for j, activation in enumerate(activations):
            _activation(activation, f"{at}.activations[{j}]")


def fit_text(text: str) -> str:
    """An explanation cut to the route's 512 characters at a word boundary, marked with an ellipsis."""
    if len(text) <= MAX_TEXT:
        return text
    cut = text[:MAX_TEXT - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "\u2026"


@dataclass
class UploadSummary:
    bodies: int = 0
    features: int = 0
    explanations: int = 0
    activations: int = 0
    never_active: list[int] = field(default_factory=list)
    shortened: int = 0


@dataclass(frozen=True)
class Shown:
    """How many examples of each kind a feature's page gets: Neuronpedia shows the top activations and a few
    from each quantile bin, and a body with all of ours (50 top, 100 quantile by default) runs to megabytes."""

    top: int = 20
    per_quantile: int = 3

    def __post_init__(self) -> None:
        if self.top < 1 or self.per_quantile < 0:
            raise InterpError(f"--np-top {self.top} must be at least 1 and --np-per-quantile {self.per_quantile} "
                              "at least 0")


def _value(value: float) -> float:
    return float(f"{value:.5g}")  # five significant digits: what a dashboard shades, a third of the bytes


def _activations(examples: list[dict], edges: list[float] | None, shown: Shown) -> list[dict]:
    """Top examples, then quantile examples with their bin's edges and share of the feature's active windows
    (the bins are equal-count quantiles of window maxima, so each of the len(edges) - 1 holds that share)."""
    chosen = []
    taken: dict[object, int] = {}
    for example in examples:
        bucket, q = example["bucket"], example["quantile"]
        limit = shown.top if bucket == "top" else shown.per_quantile if bucket == "quantile" else 0
        key = (bucket, q)
        if taken.get(key, 0) >= limit:
            continue
        taken[key] = taken.get(key, 0) + 1
        activation = {"tokens": [token or EMPTY_TOKEN for token in example["tokens"]],
                      "values": [_value(value) for value in example["acts"]]}
        if bucket == "quantile" and edges and q is not None and q + 1 < len(edges):
            activation |= {"quantileMin": edges[q], "quantileMax": edges[q + 1],
                           "quantileFraction": 1 / (len(edges) - 1)}
        chosen.append(activation)
    return chosen


def upload_features(catalog: Catalog, set_id: str, logits: Logits | None, method_name: str | None,
                    model_name: str | None, shown: Shown, summary: UploadSummary) -> Iterator[dict]:
    """Each feature as the route takes it, in feature order, reading 128 features' examples at a time."""
    rows = catalog.con.execute(
        "SELECT feature, density, quantile_edges FROM features WHERE feature_set_id = ? ORDER BY feature",
        [set_id]).fetchall()
    explanations: dict[int, list[dict]] = {}
    for feature, text, explainer, llm in catalog.con.execute(
            "SELECT feature, text, explainer, llm FROM explanations WHERE feature_set_id = ? AND status = 'ok' "
            "ORDER BY feature, created_at", [set_id]).fetchall():
        if explainer.startswith(IMPORTED):
            continue  # theirs already: posting it back would publish a copy
        summary.shortened += len(text) > MAX_TEXT
        explanations.setdefault(feature, []).append({
            "text": fit_text(text), "methodName": method_name or explanation_type(explainer),
            "modelName": model_name or llm_type_name(llm, explainer)})
    for start in range(0, len(rows), MAX_FEATURES):
        chunk = rows[start:start + MAX_FEATURES]
        examples = catalog.examples_of(set_id, [row[0] for row in chunk])
        for feature, density, edges in chunk:
            activations = _activations(examples[feature], edges, shown)
            if not activations:
                summary.never_active.append(feature)
                continue
            entry: dict = {"index": feature, "density": min(1.0, max(0.0, density or 0.0)),
                           "activations": activations}
            if feature in explanations:
                entry["explanations"] = explanations[feature]
            if logits is not None:
                entry["topLogits"], entry["bottomLogits"] = logits(feature)
            yield entry


def direct_logits(subject, source) -> Logits:
    """topLogits / bottomLogits from the feature's direct logit effect (its output direction through the
    unembedding), the 20 tokens it raises and lowers most; tokens that decode to nothing are passed over
    (the route refuses an empty token). Effects are computed for 128 features at a time, in feature order."""
    from functools import lru_cache

    from tools.experiments.interventions import direct_logit_effects

    decode = lru_cache(maxsize=None)(lambda index: str(subject.tokenizer.decode([index])))
    computed: dict[int, tuple[list[dict], list[dict]]] = {}

    def entries(values, indices) -> list[dict]:
        chosen = [{"token": decode(index), "value": value} for value, index in zip(values, indices, strict=True)]
        return [entry for entry in chosen if entry["token"]][:MAX_LOGITS]

    def logits(feature: int) -> tuple[list[dict], list[dict]]:
        if feature not in computed:
            computed.clear()
            batch = list(range(feature, min(feature + MAX_FEATURES, source.width)))
            effects = direct_logit_effects(subject, source, batch)
            k = min(2 * MAX_LOGITS, effects.shape[1])
            top, bottom = effects.topk(k, dim=1), effects.topk(k, dim=1, largest=False)
            for row, item in enumerate(batch):
                computed[item] = (entries(top.values[row].tolist(), top.indices[row].tolist()),
                                  entries(bottom.values[row].tolist(), bottom.indices[row].tolist()))
        return computed[feature]

    return logits


def _bodies(model_id: str, source_id: str, features: Iterator[dict], per_body: int) -> Iterator[dict]:
    """At most `per_body` (<= 128) features and about MAX_BODY_BYTES a body."""
    batch: list[dict] = []
    size = 0
    for feature in features:
        feature_size = len(json.dumps(feature))
        if batch and (len(batch) == per_body or size + feature_size > MAX_BODY_BYTES):
            yield {"modelId": model_id, "source": source_id, "features": batch}
            batch, size = [], 0
        batch.append(feature)
        size += feature_size
    if batch:
        yield {"modelId": model_id, "source": source_id, "features": batch}


def body_name(number: int) -> str:
    return f"body-{number:05d}.json"


def export_upload(catalog: Catalog, set_id: str, out: Path, model_id: str, source_id: str, logits: Logits | None,
                  method_name: str | None = None, model_name: str | None = None,
                  per_body: int = MAX_FEATURES, shown: Shown = Shown()) -> UploadSummary:
    """Write every body (each validated first) and a manifest naming them with their sha256, which
    `interp publish neuronpedia` checks before posting and keys its ledger by."""
    if not 1 <= per_body <= MAX_FEATURES:
        raise InterpError(f"--np-features-per-body {per_body} must be in [1, {MAX_FEATURES}] (the route's limit)")
    require_labels(catalog)
    require_empty(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = UploadSummary()
    listed = []
    for number, body in enumerate(_bodies(model_id, source_id, upload_features(
            catalog, set_id, logits, method_name, model_name, shown, summary), per_body)):
        name = body_name(number)
        validate_body(body, name)
        data = json.dumps(body, ensure_ascii=False).encode()
        (out / name).write_bytes(data)
        listed.append({"file": name, "sha256": hashlib.sha256(data).hexdigest(), "features": len(body["features"])})
        summary.bodies += 1
        summary.features += len(body["features"])
        summary.explanations += sum(len(f.get("explanations", [])) for f in body["features"])
        summary.activations += sum(len(f["activations"]) for f in body["features"])
    (out / MANIFEST).write_text(json.dumps({
        "route": "/api/feature/upload-batch", "modelId": model_id, "source": source_id, "feature_set": set_id,
        "bodies": listed, "never_active": summary.never_active, "shortened_explanations": summary.shortened},
        indent=1) + "\n", encoding="utf-8")
    return summary
