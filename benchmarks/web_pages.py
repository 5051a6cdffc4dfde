"""`interp serve` on a feature set of 131,072 features: how long its feature-set pages take, against the bare
DuckDB query of the same rows (no filters, no join), side by side in one run.

    python benchmarks/web_pages.py [--features 131072] [--repeats 5]

The catalog is the tests' tiny one with one more feature set added in SQL: every feature with statistics,
an explanation and two scores (the timing is of paging, sorting and filtering over many rows, which need no
examples). Each page is fetched over HTTP from a real server process; the median of --repeats is printed
with its ratio to the bare query (the baseline: what reading a page of rows costs at all).
"""

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.testing.servers import free_port, running  # noqa: E402
from tools.testing.tiny import cache_tiny_catalog, save_tiny_model, sentences  # noqa: E402

BIG = "big-100k"
PAGES = {
    "first page": "/sets/{set}",
    "sorted by max activation": "/sets/{set}?sort=max_act&descending=true",
    "sorted by a score": "/sets/{set}?metric=detection%20auroc&sort=score&descending=true",
    "filtered by text and score": "/sets/{set}?text=city&metric=detection%20auroc&score_min=0.8",
    "page 500": "/sets/{set}?page=500",
    "API, sorted by a score": "/api/sets/{set}?metric=detection%20auroc&sort=score&descending=true",
}


def add_big_set(catalog: Path, n: int) -> None:
    with duckdb.connect(str(catalog)) as con:
        con.execute(f"INSERT INTO feature_sets SELECT '{BIG}', model_id, hook, hf_module, 'sae', {n}, window_length, "
                    f"n_windows, tokens, source_path, source_sha256, run_id, created_at FROM feature_sets LIMIT 1")
        con.execute(f"INSERT INTO features (feature_set_id, feature, max_act, min_act, mean_act, density, "
                    f"window_density, n_tokens, run_id) SELECT '{BIG}', i, random() * 10, 0, random(), "
                    f"random() * 0.01, random(), 1000000, 'bench' FROM range({n}) t(i)")
        con.execute(f"INSERT INTO explanations (explanation_id, feature_set_id, feature, explainer, llm, prompt_hash, "
                    f"status, prompt_tokens, completion_tokens, text, run_id) SELECT 'e' || i, '{BIG}', i, "
                    f"'oneshot', 'bench', 'h', 'ok', 0, 0, "
                    f"(['names of cities', 'the token the', 'closing brackets', 'verbs of motion'])[1 + i % 4] "
                    f"|| ' ' || i, 'bench' FROM range({n}) t(i)")
        for metric in ("auroc", "balanced_accuracy"):
            con.execute(f"INSERT INTO scores (explanation_id, scorer, llm, prompt_hash, metric, status, value, n, "
                        f"prompt_tokens, completion_tokens, run_id) SELECT 'e' || i, 'detection', 'bench', 'h', "
                        f"'{metric}', 'ok', random(), 20, 0, 0, 'bench' FROM range({n}) t(i)")


def timed(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        response.read()
    return time.perf_counter() - started


def bare(catalog: Path) -> float:
    started = time.perf_counter()
    with duckdb.connect(str(catalog), read_only=True) as con:
        con.execute("SELECT feature, max_act, density FROM features WHERE feature_set_id = ? ORDER BY feature "
                    "LIMIT 100", [BIG]).fetchall()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=131072)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        save_tiny_model("gpt2", root / "model")
        (root / "corpus.txt").write_text("\n".join(sentences(300)))
        catalog = cache_tiny_catalog(root / "c.duckdb", root / "model", root / "corpus.txt", root / "sae")
        add_big_set(catalog, args.features)
        baseline = statistics.median(bare(catalog) for _ in range(args.repeats))
        port = free_port()
        command = [sys.executable, "-m", "agent.cli", "serve", "--catalog", str(catalog), "--port", str(port)]
        with running(command, f"http://127.0.0.1:{port}/api/sets"):
            print(f"{args.features:,} features; bare DuckDB page of 100 rows (open, query, close): "
                  f"{baseline * 1000:.1f} ms")
            for name, path in PAGES.items():
                url = f"http://127.0.0.1:{port}" + path.format(set=BIG)
                timed(url)  # warm
                seconds = statistics.median(timed(url) for _ in range(args.repeats))
                print(f"  {name}: {seconds * 1000:.0f} ms ({seconds / baseline:.1f}x the bare query)")


if __name__ == "__main__":
    main()
