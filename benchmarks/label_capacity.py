"""How many features a minute `interp label` gets through against an endpoint that answers at once, and what
our own pipeline costs per feature, beside a bare client that sends exactly the same requests.

    python benchmarks/label_capacity.py [--features 2000] [--concurrency 64]

The catalog: a tiny random GPT-2 with a random SAE of 2,048 latents (built in a temp folder, seconds). The
endpoint: tools/testing/vllm_server.py in rule mode, a real server process speaking vLLM's protocol that
computes no model (it tokenizes and gives the log-probabilities a planted rule gives), so its answers
are immediate but full-size: every simulation request returns 20 log-probabilities for each prompt token,
as vLLM would, tokenized by a real LLM tokenizer (the embedded SmolLM2's, ~4 characters a token like
Llama's or Qwen's; the tests' tiny one makes a token of nearly every character). It runs on the same two
cores as the client, which a real deployment's GPU server does not.

- ours: `run_label` with the one-shot explainer and the three LLM scorers (simulation, detection,
  fuzzing), --concurrency 64; the server records every request it gets;
- bare: the recorded requests replayed with the same concurrency by a minimal client (one shared urllib3
  connection pool, as ours uses; each answer's bytes read, nothing else): the transport and the server
  alone, which no client can beat.
Reported: features per minute for both and their ratio; our CPU time per feature minus the bare client's
(our overhead: everything past moving the bytes: prompts, parsing answers and log-probabilities, bootstrap
intervals, catalog reads and writes, and the explanations' embeddings for search, a local model's work,
also shown alone); the server's CPU per feature in both runs (it shares our two cores);
requests per feature by route; the resident memory after a tenth of the features and at the end (flat when
the pipeline keeps nothing per finished feature). The embedding scorer runs a local model, so it is
timed on its own, as a score-only pass over the labeled features.
"""

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.labeling.config import LabelConfig  # noqa: E402
from agent.labeling.pipeline import run_label  # noqa: E402
from evals.scorers.embedding import Embedder  # noqa: E402
from tools.catalog import Catalog  # noqa: E402
from tools.configs import CacheConfig  # noqa: E402
from tools.llm.local import embedded_llm_path  # noqa: E402
from tools.passes.cache import run_cache  # noqa: E402
from tools.testing.servers import vllm_server  # noqa: E402
from tools.testing.tiny import random_sae, save_tiny_model, sentences  # noqa: E402

RULE = ["--rule", r"\b(cat|dog)\b", "--rule-description", "animals"]


def wide_catalog(folder: Path, latents: int) -> Path:
    """A tiny GPT-2 with a random SAE at resid_post.1 whose latents nearly all fire somewhere (99%) and each
    on a few percent of tokens, like a trained SAE's: most random windows are then negatives, so detection
    is scored (asked of the endpoint) for nearly every feature, as in a real run. (A denser SAE left 3 of 4
    features without negatives, and detection failed them before any request.)"""
    save_tiny_model("gpt2", folder / "model")
    (folder / "corpus.txt").write_text("\n".join(sentences(600)))
    sae = random_sae(32, latents, "resid_post.1")
    sae.b_enc.fill_(-0.05)  # the residual stream's std is ~0.03: ~4% of tokens fire
    sae.save_saelens(folder / "sae")
    catalog = folder / "catalog.duckdb"
    run_cache(CacheConfig(model=str(folder / "model"), corpus=str(folder / "corpus.txt"), sae=str(folder / "sae"),
                          tokens=4000, window=32, batch_size=16, top_k=10, quantiles=4, per_quantile=2, random=20),
              catalog, progress=False)
    return catalog


def real_tokenizer(folder: Path) -> Path:
    """The embedded SmolLM2's tokenizer alone, saved as a folder the rule-mode server loads (it runs no model)."""
    from transformers import AutoTokenizer

    gguf = embedded_llm_path()
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(folder)
    return folder


def server_cpu_seconds() -> float:
    """CPU seconds the server processes this one started have used so far (they share our two cores)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for task in Path("/proc/self/task").iterdir():
        try:
            for child in (task / "children").read_text().split():
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
        except FileNotFoundError:
            continue  # a thread that ended while we looked
    return total


def features_scored(catalog: Path) -> str:
    """How many features each scorer scored (a scorer that fails a feature, e.g. detection without
    negatives, asks the endpoint nothing for it)."""
    with Catalog(catalog, read_only=True) as opened:
        rows = opened.con.execute("SELECT scorer, count(DISTINCT explanation_id) FROM scores WHERE status = 'ok' "
                                  "GROUP BY scorer ORDER BY scorer").fetchall()
    return ", ".join(f"{scorer} {count}" for scorer, count in rows)


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


class EmbeddingClock:
    """Thread CPU spent in the embedder (a local model: the explanations' vectors for search), summed over
    calls while it is on. The label run gives torch one thread when the embedder is its only local model,
    so a call's CPU is its calling thread's."""

    def __init__(self):
        self.seconds, self.lock, self.on = 0.0, threading.Lock(), False
        original = Embedder.embed

        def timed(embedder: Embedder, texts: list[str]):
            started = time.thread_time()
            try:
                return original(embedder, texts)
            finally:
                if self.on:
                    with self.lock:
                        self.seconds += time.thread_time() - started

        Embedder.embed = timed  # type: ignore[method-assign]


class MemoryWatch:
    """Samples this process's resident memory while `run_label` runs, keyed by features labeled so far."""

    def __init__(self, catalog: Path):
        self.catalog, self.samples, self.stop = catalog, [], threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def watch(self) -> None:
        while not self.stop.wait(1.0):
            self.samples.append(rss_mib())

    def __enter__(self) -> "MemoryWatch":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def replay(requests: list[dict], url: str, concurrency: int) -> tuple[float, float]:
    """Wall and CPU seconds of sending `requests` as they were sent, `concurrency` at a time, through the
    HTTP library our client uses (urllib3), so the difference is ours and not the library's."""
    root = url.removesuffix("/v1")
    pool_manager = urllib3.PoolManager(maxsize=concurrency, retries=False, timeout=120,
                                       headers={"content-type": "application/json"})
    bodies = [(root + request["path"], orjson.dumps(request["body"])) for request in requests]

    def send(request: tuple[str, bytes]) -> None:
        response = pool_manager.request("POST", request[0], body=request[1])
        assert response.status == 200 and response.data, response.status

    wall, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, bodies))
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        catalog = wide_catalog(folder, max(2048, args.features * 11 // 10))
        with Catalog(catalog, read_only=True) as opened:
            live = len(opened.live_features(opened.feature_set("resid_post.1")["feature_set_id"]))
        assert live >= args.features, f"only {live} live latents"
        llm = real_tokenizer(folder / "llm")
        record = folder / "requests.jsonl"
        config = LabelConfig(llm="openai:tiny", scorers="simulation,detection,fuzzing", limit=args.features,
                             concurrency=args.concurrency, device="cpu")
        embedding_clock = EmbeddingClock()
        with vllm_server(llm, *RULE, "--record", str(record)) as url:
            config = LabelConfig(**{**config.__dict__, "base_url": url})
            shutil.copy(catalog, folder / "warm.duckdb")
            warm = LabelConfig(**{**config.__dict__, "limit": 2})
            # Imports, the server's tokenizer caches and the embedder's files in the page cache; the timed
            # run still loads its own embedder (~2 s of CPU, ~1 ms a feature of ours at 2,000 features).
            run_label(warm, "resid_post.1", folder / "warm.duckdb", progress=False)
            record.write_text("")
            cpu, server_cpu = time.process_time(), server_cpu_seconds()
            embedding_clock.on = True
            with MemoryWatch(catalog) as memory:
                result = run_label(config, "resid_post.1", catalog, progress=False)
            embedding_clock.on = False
            ours_cpu, ours_server = time.process_time() - cpu, server_cpu_seconds() - server_cpu
            scored_by = features_scored(catalog)
            requests = [json.loads(line) for line in record.read_text().splitlines()]
            server_cpu = server_cpu_seconds()
            bare_wall, bare_cpu = replay(requests, url, args.concurrency)
            bare_server = server_cpu_seconds() - server_cpu
            embedding = LabelConfig(**{**config.__dict__, "scorers": "simulation,detection,fuzzing,embedding"})
            embed_started = time.perf_counter()
            scored = run_label(embedding, "resid_post.1", catalog, progress=False)
            embed_seconds = time.perf_counter() - embed_started
        n = result.labeled + result.failed
        assert n == args.features, f"labeled {result.labeled}, failed {result.failed} of {args.features}"
        routes = Counter(request["path"] for request in requests)
        ours_rate, bare_rate = n / result.seconds * 60, n / bare_wall * 60
        print(f"{n} features ({result.failed} failed), concurrency {args.concurrency}, explainer + simulation, "
              f"detection, fuzzing; {len(requests)} requests: "
              + ", ".join(f"{count / n:.1f} {path}" for path, count in sorted(routes.items())) + " per feature; "
              f"features scored: {scored_by}")
        print(f"ours: {result.seconds:7.1f} s  {ours_rate:8.0f} features/min  CPU {ours_cpu / n * 1000:6.1f} "
              f"ms/feature, server CPU {ours_server / n * 1000:6.1f} ms/feature")
        print(f"bare: {bare_wall:7.1f} s  {bare_rate:8.0f} features/min  CPU {bare_cpu / n * 1000:6.1f} "
              f"ms/feature, server CPU {bare_server / n * 1000:6.1f} ms/feature (same requests, minimal client)")
        print(f"ours / bare features per minute: {ours_rate / bare_rate:.2f}; our overhead "
              f"{(ours_cpu - bare_cpu) / n * 1000:.1f} ms of CPU per feature (target: >= 2,000 features/min, "
              "<= 30 ms)")
        print(f"of our overhead, the explanations' embeddings for search (local {config.embedder}, one torch "
              f"thread): {embedding_clock.seconds / n * 1000:.1f} ms of CPU per feature")
        tenth = memory.samples[max(0, len(memory.samples) // 10 - 1)] if memory.samples else rss_mib()
        print(f"resident memory: {tenth:.0f} MiB after a tenth of the run, {max(memory.samples or [rss_mib()]):.0f} "
              "MiB at most")
        print(f"embedding scorer alone (score-only pass, local {config.embedder}): "
              f"{embed_seconds / max(1, scored.labeled) * 1000:.1f} ms per feature")


if __name__ == "__main__":
    main()
