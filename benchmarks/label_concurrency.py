"""`interp label` throughput at concurrency 8 against concurrency 1, side by side in one run, against a real
OpenAI-compatible server process on loopback that answers every request after a fixed delay.

    python benchmarks/label_concurrency.py [--delay 0.1] [--features 8] [--repeats 2]

The catalog is a tiny model's (tests' random GPT-2 with a sparse random SAE, built in a temp folder),
so the time is the LLM's and our pipeline's, not a subject model's; it is the labeling loop's time
(reading examples, LLM calls, embedding, catalog writes), after the embedder has loaded. Each labeled feature costs one
explanation call and one detection call per held-out example; the two concurrencies alternate over
--repeats runs on fresh copies of the catalog and the medians are compared (target >= 6x). Also prints
the LLM tokens per labeled feature for each explainer and scorer, read back from the catalog.
"""

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.labeling.config import LabelConfig  # noqa: E402
from agent.labeling.pipeline import run_label
from agent.views.terminal import print_token_usage  # noqa: E402
from tools.catalog import Catalog  # noqa: E402
from tools.testing.servers import stub_server  # noqa: E402
from tools.testing.tiny import (  # noqa: E402
    cache_tiny_catalog,  # noqa: E402
    save_tiny_model,
    sentences,
)


def tiny_setup(folder: Path) -> Path:
    save_tiny_model("gpt2", folder / "model")
    (folder / "corpus.txt").write_text("\n".join(sentences(300)))
    return cache_tiny_catalog(folder / "catalog.duckdb", folder / "model", folder / "corpus.txt", folder / "sae")


def timed_label(catalog: Path, copy: Path, url: str, concurrency: int, features: int) -> float:
    shutil.copy(catalog, copy)
    config = LabelConfig(llm="openai:stub", base_url=url, scorers="detection", limit=features,
                         concurrency=concurrency, device="cpu")
    result = run_label(config, "resid_post.1", copy, progress=False)
    assert result.labeled == features, f"labeled {result.labeled} of {features}"
    return result.seconds


def tokens_per_feature(catalog: Path) -> None:
    with Catalog(catalog, read_only=True) as opened:
        run_id = opened.con.execute(
            "SELECT run_id FROM runs WHERE kind = 'label' ORDER BY started_at DESC").fetchone()[0]
        print_token_usage(opened.token_usage(run_id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delay", type=float, default=0.1, help="seconds the server waits before each answer")
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        catalog = tiny_setup(folder)
        with stub_server(delay=args.delay) as url:
            timed_label(catalog, folder / "warm.duckdb", url, 8, 2)  # loads the embedder once
            times = {1: [], 8: []}
            for _ in range(args.repeats):
                for concurrency in (1, 8):
                    times[concurrency].append(timed_label(catalog, folder / f"c{concurrency}.duckdb", url,
                                                          concurrency, args.features))
        one, eight = statistics.median(times[1]), statistics.median(times[8])
        print(f"{args.features} features, server delay {args.delay} s per request")
        print(f"concurrency 1: {one:6.2f} s  ({args.features / one * 60:.1f} features/min)")
        print(f"concurrency 8: {eight:6.2f} s  ({args.features / eight * 60:.1f} features/min)")
        print(f"speed-up 8 vs 1: {one / eight:.1f}x (target >= 6x)")
        print("LLM tokens per labeled feature (the stub counts words):")
        tokens_per_feature(folder / "c8.duckdb")


if __name__ == "__main__":
    main()
