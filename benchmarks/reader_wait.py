"""How long a page waits for the catalog while `interp label` writes it, beside the same reads on an idle
catalog, and what the readers cost the writer, side by side in one run.

    python benchmarks/reader_wait.py [--features 600] [--readers 10] [--delay 0.05] [--concurrency 16]

A label run (one-shot explainer, detection) against the loopback OpenAI-compatible server
(tools/testing/loopback_server.py, answering after --delay seconds) writes a feature set of a tiny random
GPT-2's SAE (2,048 latents, built in a temp folder). Meanwhile a reader process opens the catalog the way
`interp serve` does for every page (read-only, waiting up to 10 s, a thread per request) --readers times a
second and reads the home page's rows. Per read: the wait (from asking to an open connection) and the
whole read.

Runs, alternating so the machine's drift falls on both: the same reads against the idle catalog; a label
run with the readers; a label run without them. Targets (issue "Readers never starve"): p99 wait <= 1.5 s
and max <= 3 s while the run writes; the run's features a minute within 10% of the run without readers.
The server, the run and the readers share this machine's cores, so the readers' own CPU is in the
comparison too; --delay keeps the run waiting on its endpoint, as against a real one, rather than on CPU.
"""

import argparse
import math
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.labeling.config import LabelConfig  # noqa: E402
from agent.labeling.pipeline import run_label  # noqa: E402
from benchmarks.label_capacity import wide_catalog  # noqa: E402
from tools.testing.servers import stub_server  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")
PAGE_WAIT_SECONDS = 10.0
"""What the web app's pages wait for the catalog (agent/web/app.py CATALOG_WAIT_SECONDS)."""


def read_like_pages(catalog: Path, per_second: float, ready, stop, results) -> None:
    """A reader process: every 1/per_second s, on a fixed schedule, a page's read starts on a thread of its
    own (as the web app's requests do, each with its own read-only connection), whether or not earlier reads
    are still waiting: it opens the catalog and reads the home page's rows."""
    from concurrent.futures import ThreadPoolExecutor

    from agent.web import pages
    from tools.catalog import Catalog
    from tools.errors import InterpError

    def read() -> tuple[float, float]:
        """A page's wait and whole read; a page that gave up after PAGE_WAIT_SECONDS (a 503) counts as an
        infinite wait."""
        asked = time.monotonic()
        try:
            with Catalog(catalog, read_only=True, wait_seconds=PAGE_WAIT_SECONDS) as opened:
                waited = time.monotonic() - asked
                pages.home(opened)
        except InterpError:
            return math.inf, math.inf
        return waited, time.monotonic() - asked

    read()  # imports and DuckDB warmed before timing
    ready.set()
    futures = []
    with ThreadPoolExecutor(max_workers=64) as pool:
        tick = time.monotonic()
        while not stop.is_set():
            futures.append(pool.submit(read))
            tick += 1 / per_second
            stop.wait(max(0.0, tick - time.monotonic()))
    done = [future.result() for future in futures]
    results.put(([waited for waited, _ in done], [whole for _, whole in done]))


class Readers:
    def __init__(self, catalog: Path, per_second: float):
        self.ready, self.stop, self.results = SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
        self.process = SPAWN.Process(target=read_like_pages, args=(catalog, per_second, self.ready, self.stop,
                                                                   self.results))

    def __enter__(self) -> "Readers":
        self.process.start()
        assert self.ready.wait(300), "the reader process did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()

    def collected(self) -> tuple[list[float], list[float]]:
        waits, reads = self.results.get(timeout=300)
        self.process.join(60)
        return waits, reads


def label(catalog: Path, copy: Path, url: str, args: argparse.Namespace, readers: bool) -> tuple[float, list, list]:
    """Features a minute of one label run on a fresh copy of the catalog, and the readers' waits and reads."""
    shutil.copy(catalog, copy)
    config = LabelConfig(llm="openai:stub", base_url=url, scorers="detection", limit=args.features,
                         concurrency=args.concurrency, device="cpu")
    if not readers:
        result = run_label(config, "resid_post.1", copy, progress=False)
        return result.labeled / result.seconds * 60, [], []
    with Readers(copy, args.readers) as reading:
        result = run_label(config, "resid_post.1", copy, progress=False)
    waits, reads = reading.collected()
    return result.labeled / result.seconds * 60, waits, reads


def idle(catalog: Path, args: argparse.Namespace) -> tuple[list, list]:
    with Readers(catalog, args.readers) as reading:
        time.sleep(args.idle_seconds)
    return reading.collected()


def quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (f"p50 {statistics.median(ordered) * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms  "
            f"max {ordered[-1] * 1000:7.1f} ms  (n={len(ordered)}, gave up {sum(map(math.isinf, ordered))})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=600)
    parser.add_argument("--readers", type=float, default=10, help="reads a second")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds the server waits before each answer")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--idle-seconds", type=float, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        catalog = wide_catalog(folder, 2048)
        rates: dict[bool, list[float]] = {True: [], False: []}
        busy_waits, busy_reads, idle_waits, idle_reads = [], [], [], []
        with stub_server(delay=args.delay) as url:
            label(catalog, folder / "warm.duckdb", url, argparse.Namespace(**{**vars(args), "features": 8}), False)
            for _ in range(args.repeats):
                waits, reads = idle(catalog, args)
                idle_waits += waits
                idle_reads += reads
                for readers in (True, False):
                    rate, waits, reads = label(catalog, folder / "run.duckdb", url, args, readers)
                    rates[readers].append(rate)
                    busy_waits += waits
                    busy_reads += reads
        with_readers, without = statistics.median(rates[True]), statistics.median(rates[False])
        print(f"{args.features} features a run, concurrency {args.concurrency}, server delay {args.delay} s; "
              f"{args.readers:g} reads a second; {args.repeats} rounds")
        print(f"wait for the catalog, idle:         {quantiles(idle_waits)}")
        print(f"wait for the catalog, run writing:  {quantiles(busy_waits)}   (target p99 <= 1500, max <= 3000)")
        print(f"whole read, idle:                   {quantiles(idle_reads)}")
        print(f"whole read, run writing:            {quantiles(busy_reads)}")
        print(f"label run: {without:7.1f} features/min without readers, {with_readers:7.1f} with "
              f"(ratio {with_readers / without:.3f}; target >= 0.90); runs: "
              f"{', '.join(f'{r:.0f}' for r in rates[False])} / {', '.join(f'{r:.0f}' for r in rates[True])}")


if __name__ == "__main__":
    main()
