"""Neuronpedia's `POST /api/feature/upload-batch` on loopback, as a real separate process, for testing
`interp publish neuronpedia`.

    python tools/testing/neuronpedia_server.py PORT --record FILE [--key-env NAME] [--source MODEL/SOURCE]
        [--method NAME ...] [--model NAME ...] [--script STATUS,STATUS,...]

The checks follow the route (mitre/neuronpedia `apps/webapp/app/api/feature/upload-batch/route.tsx` at
00aa0a19), transcribed here as pydantic models independently of the client's own validator
(agent/neuronpedia/upload.py), so each is a check on the other: a yup validation failure is 400
`{error, path}`; an unknown `x-api-key` is 401; what the route throws after validation (unknown source,
tokens and values of different lengths, repeated indexes, unknown explanation method or model names) is
500 `{error}`. Accepted bodies are appended to --record as JSON lines. --script makes the first requests
answer with the given statuses (e.g. 0,503,429: 0 handles that request as usual) before any check, to
exercise retries and resuming.
"""

import argparse
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from tools.testing.json_answers import send_json

NonEmpty = Annotated[str, Field(min_length=1)]


class Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")  # yup's object() keeps unknown keys and the route ignores them


class Logit(Loose):
    token: NonEmpty
    value: float


class Explanation(Loose):
    text: Annotated[str, Field(min_length=1, max_length=512)]
    methodName: str | None = None  # noqa: N815  (the route's field names)
    modelName: str | None = None  # noqa: N815


class Activation(Loose):
    tokens: Annotated[list[NonEmpty], Field(min_length=1, max_length=1024)]
    values: Annotated[list[float], Field(min_length=1, max_length=1024)]
    quantileMax: Annotated[float, Field(le=99_999_999)] | None = None  # noqa: N815
    quantileMin: Annotated[float, Field(le=99_999_999)] | None = None  # noqa: N815
    quantileFraction: Annotated[float, Field(ge=0, le=1)] | None = None  # noqa: N815


class Feature(Loose):
    index: Annotated[StrictInt, Field(ge=0, le=10_000_000)]
    density: Annotated[float, Field(ge=0, le=1)] | None = None
    topLogits: Annotated[list[Logit], Field(max_length=20)] | None = None  # noqa: N815
    bottomLogits: Annotated[list[Logit], Field(max_length=20)] | None = None  # noqa: N815
    explanations: list[Explanation] | None = None
    activations: Annotated[list[Activation], Field(min_length=1)]


class UploadBatch(Loose):
    modelId: NonEmpty  # noqa: N815
    source: NonEmpty
    features: Annotated[list[Feature], Field(min_length=1, max_length=128)]


def thrown(batch: UploadBatch, source: str, methods: set[str], models: set[str]) -> str:
    """What the route throws after validation, or ''."""
    if f"{batch.modelId.lower()}/{batch.source.lower()}" != source:
        return "Source set not found."
    for feature in batch.features:
        for activation in feature.activations:
            if len(activation.tokens) != len(activation.values):
                return "One of the activations tokens lengths does not match its values length."
    if len({feature.index for feature in batch.features}) != len(batch.features):
        return "All indexes must be unique."
    named = [e for feature in batch.features for e in feature.explanations or []]
    missing = {e.methodName.lower() for e in named if e.methodName is not None} - methods
    if missing:
        return f"Invalid Explanation Method Names: {', '.join(sorted(missing))}."
    missing = {e.modelName.lower() for e in named if e.modelName is not None} - models
    if missing:
        return f"Invalid Explanation Model Names: {', '.join(sorted(missing))}."
    return ""


def serve(port: int, record: str, key: str, source: str, methods: set[str], models: set[str],
          script: list[int]) -> None:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def send(self, status: int, body: dict) -> None:
            send_json(self, status, json.dumps(body).encode())

        def do_GET(self) -> None:
            self.send(200, {"ok": True})

        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                scripted = script.pop(0) if script else None
            if scripted:
                self.send(scripted, {"error": "scripted failure"})
            elif self.path != "/api/feature/upload-batch":
                self.send(404, {"error": "not found"})
            elif self.headers.get("x-api-key") != key:
                self.send(401, {"error": "Invalid API key"})
            else:
                try:
                    batch = UploadBatch.model_validate_json(data)
                except ValidationError as error:
                    first = error.errors()[0]
                    self.send(400, {"error": first["msg"], "path": ".".join(map(str, first["loc"]))})
                    return
                problem = thrown(batch, source, methods, models)
                if problem:
                    self.send(500, {"error": problem})
                    return
                with lock, open(record, "a", encoding="utf-8") as handle:
                    handle.write(data.decode() + "\n")
                self.send(200, {"message": f"{len(batch.features)} features created."})

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--record", required=True)
    parser.add_argument("--key-env", default="NEURONPEDIA_API_KEY", help="the key accepted, read from this variable")
    parser.add_argument("--source", default="tiny-gpt20/1-res-test")
    parser.add_argument("--method", action="append", default=[])
    parser.add_argument("--model", action="append", default=[])
    parser.add_argument("--script", default="")
    args = parser.parse_args()
    serve(args.port, args.record, os.environ[args.key_env], args.source.lower(), set(args.method), set(args.model),
          [int(status) for status in args.script.split(",") if status])
