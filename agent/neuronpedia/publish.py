"""`interp publish neuronpedia DIR`: post the bodies `interp export --format neuronpedia-upload` wrote to
Neuronpedia's `POST /api/feature/upload-batch`, resumably.

Every body is checked (its sha256 against the manifest, then the route's rules) before the first post. A
body the server accepted goes into `published.jsonl` beside the bodies, keyed by URL and sha256, so a
second run posts only what is left. The API key is read from the environment variable named by
--api-key-env, sent in the `x-api-key` header, and written nowhere; it is never sent over plain HTTP to a
host that is not this machine.

Retried: connection failures, timeouts, 429 and 5xx, with exponential backoff (a numeric Retry-After is
honoured). Not retried: 400 (the route's validation: its message and field are shown), 401/403 (the key),
other 4xx. One caveat from the route itself: it creates explanations and activations with fresh ids, so a
body whose post timed out after the server committed it is published twice if posted again; the ledger
cannot know, and says which body that was.
"""

import hashlib
import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from agent.neuronpedia.upload import MANIFEST, validate_body
from tools.errors import InterpError

ROUTE = "/api/feature/upload-batch"
LEDGER = "published.jsonl"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class PublishResult:
    posted: int
    skipped: int
    features: int


def check_url(url: str) -> str:
    """The base URL without a trailing slash; plain HTTP only to this machine (the key travels with it)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InterpError(f"--url '{url}' is not an http(s) URL like https://www.neuronpedia.org")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise InterpError(f"--url '{url}' is plain HTTP to another host; the API key would travel in clear text "
                          "(use https://)")
    return url.rstrip("/")


def read_key(env_name: str) -> str:
    key = os.environ.get(env_name, "").strip()
    if not key:
        raise InterpError(f"environment variable {env_name} holds no API key; set it to your Neuronpedia API key "
                          "(neuronpedia.org/account), or name another with --api-key-env")
    return key


def checked_bodies(folder: Path) -> list[tuple[str, str, bytes]]:
    """(file, sha256, bytes) of every body the manifest lists, each matching its sha256 and the route's rules."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise InterpError(f"'{folder}' has no {MANIFEST}; write the bodies with `interp export SET --format "
                          "neuronpedia-upload --out DIR` first")
    try:
        listed = json.loads(manifest_path.read_text(encoding="utf-8"))["bodies"]
    except (ValueError, KeyError, TypeError) as error:
        raise InterpError(f"'{manifest_path}' is not a manifest written by the upload export ({error})") from None
    bodies = []
    for entry in listed:
        path = folder / str(entry["file"])
        if path.name != entry["file"] or not path.is_file():
            raise InterpError(f"{MANIFEST} names '{entry['file']}', which is not a body in '{folder}'")
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry["sha256"]:
            raise InterpError(f"'{path}' changed since it was exported (sha256 {digest[:12]}, manifest "
                              f"{str(entry['sha256'])[:12]}); export again")
        try:
            body = json.loads(data)
        except ValueError as error:
            raise InterpError(f"'{path}' is not JSON ({error})") from None
        validate_body(body, path.name)
        bodies.append((path.name, digest, data))
    return bodies


def published(folder: Path, url: str) -> set[str]:
    """sha256 of the bodies this URL already accepted."""
    ledger = folder / LEDGER
    if not ledger.exists():
        return set()
    done = set()
    for line in ledger.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash: its body is posted again
        if row.get("url") == url and row.get("status") == "accepted":
            done.add(row["sha256"])
    return done


def _refusal(response: httpx.Response) -> str:
    try:
        answer = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(answer, dict) and "error" in answer:
        return str(answer["error"])[:300] + (f" (at {answer['path']})" if answer.get("path") else "")
    return json.dumps(answer)[:300]


def _wait(response: httpx.Response | None, attempt: int, backoff: float) -> float:
    retry_after = response.headers.get("retry-after", "") if response is not None else ""
    return float(retry_after) if retry_after.isdigit() else backoff * 2 ** attempt


def post_body(client: httpx.Client, url: str, key: str, name: str, data: bytes, attempts: int,
              backoff: float) -> str:
    """Post one body until it is accepted (returns the server's message) or refused for good (InterpError)."""
    problem = ""
    for attempt in range(attempts):
        response = None
        try:
            response = client.post(url + ROUTE, content=data,
                                   headers={"x-api-key": key, "content-type": "application/json"})
        except httpx.TransportError as error:
            problem = f"{type(error).__name__}: {error}"
        else:
            if response.is_success:
                try:
                    return str(response.json().get("message", ""))
                except (ValueError, AttributeError):
                    return response.text[:200]
            if response.status_code in (401, 403):
                raise InterpError(f"{url} refused the API key ({response.status_code}: {_refusal(response)})")
            if response.status_code != 429 and response.status_code < 500:
                raise InterpError(f"{url} refused {name} ({response.status_code}): {_refusal(response)}")
            problem = f"{response.status_code}: {_refusal(response)}"
        if attempt + 1 < attempts:
            time.sleep(_wait(response, attempt, backoff))
    raise InterpError(f"{url} did not accept {name} after {attempts} attempts (last: {problem}); run the same "
                      "command again to resume")


def publish(folder: Path, url: str, api_key_env: str, attempts: int = 5, backoff: float = 1.0,
            timeout: float = 120.0) -> PublishResult:
    if attempts < 1:
        raise InterpError(f"--attempts {attempts} must be at least 1")
    base = check_url(url)
    key = read_key(api_key_env)
    bodies = checked_bodies(folder)
    done = published(folder, base)
    posted = features = 0
    with httpx.Client(timeout=timeout) as client, (folder / LEDGER).open("a", encoding="utf-8") as ledger:
        for name, digest, data in bodies:
            if digest in done:
                continue
            message = post_body(client, base, key, name, data, attempts, backoff)
            count = len(json.loads(data)["features"])
            ledger.write(json.dumps({"url": base, "file": name, "sha256": digest, "status": "accepted",
                                     "features": count, "message": message,
                                     "at": datetime.now(UTC).isoformat(timespec="seconds")}) + "\n")
            ledger.flush()
            os.fsync(ledger.fileno())
            done.add(digest)
            posted += 1
            features += count
    return PublishResult(posted, len(bodies) - posted, features)
