"""Two real processes on one catalog: identical runs never do the work twice, and whoever comes second
gets a clear message or finds the work done."""

import subprocess

import duckdb

from tests.agent.test_cli import FAST, interp_command

ALREADY_RUNNING = "run is already running on"


def run_twice_at_once(*args: str) -> list[subprocess.CompletedProcess]:
    processes = [subprocess.Popen(interp_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


def accepted(result: subprocess.CompletedProcess) -> bool:
    """Done the work, found it done, or refused as the second writer; never a traceback."""
    return result.returncode == 0 or (result.returncode == 2 and ALREADY_RUNNING in result.stderr)


def test_two_identical_cache_runs_write_one_feature_set(tmp_path, tiny_models, text_corpus):
    catalog = tmp_path / "c.duckdb"
    args = ["cache", "--model", str(tiny_models["gpt2"]), "--hook", "mlp.1", "--corpus", str(text_corpus),
            "--tokens", "1000", "--catalog", str(catalog), *FAST]
    results = run_twice_at_once(*args)
    assert all(accepted(r) for r in results), [r.stderr[-500:] for r in results]
    assert any(r.returncode == 0 and "feature set mlp.1-" in r.stderr for r in results)
    again = subprocess.run(interp_command(*args), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already cached by run" in again.stderr
    with duckdb.connect(str(catalog), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM feature_sets").fetchone() == (1,)


def test_two_identical_label_runs_explain_each_feature_once(tmp_path, tiny_models, text_corpus):
    catalog = tmp_path / "c.duckdb"
    cache = ["cache", "--model", str(tiny_models["gpt2"]), "--hook", "mlp.1", "--corpus", str(text_corpus),
             "--tokens", "1000", "--catalog", str(catalog), *FAST]
    assert subprocess.run(interp_command(*cache), capture_output=True, timeout=300).returncode == 0
    results = run_twice_at_once("label", "mlp.1", "--explainer", "token-stats", "--scorers", "", "--device", "cpu",
                                "--catalog", str(catalog), "--no-progress")
    assert all(accepted(r) for r in results), [r.stderr[-500:] for r in results]
    with duckdb.connect(str(catalog), read_only=True) as con:
        labeled, distinct = con.execute("SELECT count(*), count(DISTINCT feature) FROM explanations "
                                        "WHERE status = 'ok'").fetchone()
        live = con.execute("SELECT count(*) FROM features WHERE max_act > 0").fetchone()[0]
    assert labeled == distinct == live
