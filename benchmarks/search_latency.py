"""`interp search` from a cold start: the numpy query encoder (no torch) beside sentence-transformers, each in a
fresh process as a user's command runs, alternated, on a labeled catalog.

    python benchmarks/search_latency.py --catalog interp.duckdb [--repeats 5]

Run it where the README's main job ran (any catalog with labels embedded by the default embedder).
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROGRAM = """
import sys
from agent.labeling import search
if sys.argv[1] == "library":  # the path every search took before: sentence-transformers' model
    search.load_query_encoder = lambda folder, name: None
from agent.cli import main
sys.exit(main(["search", "names of cities", "-n", "5", "--json", "--catalog", sys.argv[2]]))
"""


def timed(path: str, catalog: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", PROGRAM, path, str(catalog)], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=Path("interp.duckdb"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    timed("numpy", args.catalog)  # warm the file cache for both
    seconds: dict[str, list[float]] = {"numpy": [], "library": []}
    for _ in range(args.repeats):
        for path in seconds:
            seconds[path].append(timed(path, args.catalog))
    ours, theirs = (statistics.median(seconds[path]) for path in ("numpy", "library"))
    print(f"`interp search` from a cold start, whole process, median of {args.repeats}:")
    print(f"numpy query encoder (ours):      {ours:6.2f} s")
    print(f"sentence-transformers (library): {theirs:6.2f} s")
    print(f"library / ours: {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
