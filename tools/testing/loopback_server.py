"""A minimal OpenAI-compatible chat server on loopback, run as a real separate process, for testing the
endpoint client (retries, errors, usage, what it sends) and for the concurrency benchmark.

    python tools/testing/loopback_server.py PORT [--delay SECONDS] [--script FILE] [--record FILE]
                                                 [--explanations N]

Without --script every request gets "Yes" ("[1, 1, ...]" for a list of excerpts; an explanation when the
prompt asks for one) after
--delay seconds. A script is a JSON list of [status, body] pairs served in order to successive requests
(then the default answer), so a test can make the server fail with 429 twice and then answer. A third
element sets how the body is sent: {"trickle": SECONDS} sends it one byte at a time, SECONDS apart;
{"size": N} sends N bytes of filler instead (an endless-looking answer); {"gzip": true} compresses it
(Content-Encoding: gzip); {"unsized": true} leaves out Content-Length (the body ends when the connection
closes). --record appends each request's path and the scheme of its Authorization header (never the
credential) as a JSON line. --explanations N answers the first N requests for an explanation and holds every
later one until a POST to /release (judges are still answered): a label run against it stops mid-way with
exactly N features done, however fast the machine, for a test to interrupt it there.
"""

import argparse
import gzip
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(text: str, model: str, prompt: str) -> dict:
    return {"id": "x", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
                      "total_tokens": len(prompt.split()) + len(text.split())}}


def serve(port: int, delay: float, script: list, record: str = "", explanations: int | None = None) -> None:
    lock = threading.Lock()
    remaining = list(script)
    explained = [0]
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def send(self, status: int, body, how: dict | None = None) -> None:
            how = how or {}
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            if how.get("gzip"):
                data = gzip.compress(data)
            size = how.get("size", len(data))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if how.get("gzip"):
                self.send_header("Content-Encoding", "gzip")
            if not how.get("unsized"):
                self.send_header("Content-Length", str(size))
            self.end_headers()
            try:
                if "size" in how:
                    block = b" " * 2**20
                    for start in range(0, size, len(block)):
                        self.wfile.write(block[:size - start])
                elif "trickle" in how:
                    for byte in data:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(how["trickle"])
                else:
                    self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up, as it should

        def do_GET(self) -> None:
            self.send(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})

        def do_POST(self) -> None:
            if self.path == "/release":
                release.set()
                self.send(200, {"released": True})
                return
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                scripted = remaining.pop(0) if remaining else None
                if record:
                    with open(record, "a", encoding="utf-8") as recorded:
                        scheme = (self.headers.get("Authorization") or "").split(" ")[0]
                        recorded.write(json.dumps({"path": self.path, "auth": scheme}) + "\n")
            time.sleep(delay)
            if scripted is not None:
                self.send(*scripted)
                return
            prompt = request["messages"][-1]["content"]
            listed = len(re.findall(r"^<example \d+>$", prompt, re.M))
            if "Answer with a list of" in prompt:
                text = "[" + ", ".join(["1"] * listed) + "]"
            elif "Answer Yes or No" in prompt:
                text = "Yes"
            else:
                if prompt.rstrip().endswith("Explanation:"):  # the explain prompts (prompts/explain*.md)
                    with lock:
                        explained[0] += 1
                        held = explanations is not None and explained[0] > explanations
                    if held:
                        release.wait()
                text = "Explanation: words about animals"
            self.send(200, completion(text, request["model"], prompt))

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--script", help="JSON file: a list of [status, body] responses served first")
    parser.add_argument("--record", default="", help="append each request's path and auth scheme to this file")
    parser.add_argument("--explanations", type=int, help="answer this many explanation requests, hold the rest")
    args = parser.parse_args()
    serve(args.port, args.delay, json.load(open(args.script)) if args.script else [], args.record, args.explanations)
