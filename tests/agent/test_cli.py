"""The `interp` command: bad input gives one clear line and a non-zero exit and leaves the catalog
untouched; interrupted runs (Ctrl-C, kill -9) resume to the same result; `interp features` shows it."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agent.cli import main
from tools.catalog import SCHEMA_VERSION
from tools.testing.tiny import sentences

FAST = ["--window", "16", "--batch-size", "8", "--top-k", "5", "--quantiles", "4", "--per-quantile", "2",
        "--random", "3", "--no-progress"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def cached_catalog(tmp_path, tiny_models, text_corpus) -> Path:
    catalog = tmp_path / "c.duckdb"
    code = main(["cache", "--model", str(tiny_models["gpt2"]), "--hook", "mlp.1", "--corpus", str(text_corpus),
                 "--tokens", "1000", "--catalog", str(catalog), *FAST])
    assert code == 0
    return catalog


def bad_inputs(tmp_path: Path, tiny_models: dict, corpus: Path) -> dict[str, tuple[list[str], str]]:
    (tmp_path / "empty.txt").write_text("  \n\n ")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)))
    pq.write_table(pa.table({"body": ["some text"] * 10}), tmp_path / "nocol.parquet")
    model = str(tiny_models["gpt2"])
    from tools.testing.tiny import random_sae

    wide = random_sae(64, 40, "resid_post.1").save_saelens(tmp_path / "wide-sae")
    elsewhere = random_sae(32, 40, "resid_post.2").save_saelens(tmp_path / "elsewhere-sae")
    return {
        "model path": (["--model", str(tmp_path / "no-such-model")], "model path .* does not exist"),
        "hub id offline": (["--model", "someone/some-model"], "not a local path and the model hub is not reachable"),
        "hook": (["--model", model, "--hook", "mlp.7"], r"unknown hook 'mlp.7'; valid: resid_pre.0..2"),
        "hook name": (["--model", model, "--hook", "neurons.1"], "unknown hook 'neurons.1'"),
        "empty corpus": (["--model", model, "--corpus", str(tmp_path / "empty.txt")], "fewer than 16 tokens"),
        "binary corpus": (["--model", model, "--corpus", str(tmp_path / "binary.txt")], "is not text"),
        "parquet column": (["--model", model, "--corpus", str(tmp_path / "nocol.parquet")],
                           "has no column 'text'; columns: body"),
        "zero budget": (["--model", model, "--tokens", "0"], "--tokens must be positive, got 0"),
        "negative budget": (["--model", model, "--tokens", "-5"], "--tokens must be positive, got -5"),
        "sae width": (["--model", model, "--hook", "resid_post.1", "--sae", str(wide)],
                      "SAE input width 64 does not match hook resid_post.1 of this model \\(width 32\\)"),
        "sae hook": (["--model", model, "--hook", "resid_post.1", "--sae", str(elsewhere)],
                     "--hook resid_post.1 disagrees with the hook SAE .* reads \\(resid_post.2\\)"),
        "sae file": (["--model", model, "--sae", str(tmp_path)], "holds no SAE or transcoder this tool reads"),
    }


@pytest.mark.parametrize("case", ["model path", "hub id offline", "hook", "hook name", "empty corpus",
                                  "binary corpus", "parquet column", "zero budget", "negative budget",
                                  "sae width", "sae hook", "sae file"])
def test_bad_input_is_one_line_and_leaves_the_catalog_untouched(case, cached_catalog, tmp_path, tiny_models,
                                                                text_corpus, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args, message = bad_inputs(tmp_path, tiny_models, text_corpus)[case]
    before = digest(cached_catalog)
    capsys.readouterr()
    full = ["cache", "--hook", "mlp.1", "--corpus", str(text_corpus), "--catalog", str(cached_catalog), *FAST]
    code = main(full + args)  # later flags win
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("error: ") and "\n" not in err, err
    assert pytest.importorskip("re").search(message, err), err
    assert digest(cached_catalog) == before


def test_catalog_paths_that_cannot_work(tmp_path, tiny_models, text_corpus, capsys):
    not_duckdb = tmp_path / "notes.duckdb"
    not_duckdb.write_text("just some notes\n")
    other_duckdb = tmp_path / "other.duckdb"
    with duckdb.connect(str(other_duckdb)) as con:
        con.execute("CREATE TABLE sales (x INTEGER)")
    future = tmp_path / "future.duckdb"
    with duckdb.connect(str(future)) as con:
        con.execute("CREATE TABLE schema_info (key VARCHAR PRIMARY KEY, value VARCHAR)")
        con.execute("INSERT INTO schema_info VALUES ('schema_version', ?)", [str(SCHEMA_VERSION + 1)])
    cases = {
        tmp_path / "missing-dir" / "c.duckdb": "folder .* does not exist",
        tmp_path: "is a directory",
        not_duckdb: "is not a DuckDB catalog",
        other_duckdb: "is a DuckDB file but not an interp catalog",
        future: f"schema version {SCHEMA_VERSION + 1}, newer than this interp-agent understands",
    }
    for catalog, message in cases.items():
        before = digest(catalog) if catalog.is_file() else None
        code = main(["cache", "--model", str(tiny_models["gpt2"]), "--hook", "mlp.1", "--corpus", str(text_corpus),
                     "--tokens", "500", "--catalog", str(catalog), *FAST])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error: ") and "\n" not in err
        assert pytest.importorskip("re").search(message, err), err
        if before:
            assert digest(catalog) == before
    assert not (tmp_path / "missing-dir").exists()


def test_features_lists_sets_and_shows_highlighted_examples(cached_catalog, capsys):
    assert main(["features", "--catalog", str(cached_catalog)]) == 0
    listing = capsys.readouterr().out
    assert "mlp.1-" in listing and "neuron" in listing
    assert main(["features", "mlp.1", "--catalog", str(cached_catalog), "-n", "3"]) == 0
    listing = capsys.readouterr().out
    assert "top 3 by max_act" in listing and "#0 max" in listing  # the strongest feature previewed
    assert main(["features", "mlp.1", "5", "--catalog", str(cached_catalog), "-n", "2"]) == 0
    shown = capsys.readouterr().out
    assert "feature 5" in shown and "#0 max" in shown and "«" in shown  # activating tokens marked
    assert main(["features", "mlp.1", "999", "--catalog", str(cached_catalog)]) == 2
    assert "feature 999 is not in feature set" in capsys.readouterr().err
    assert main(["features", "nope", "--catalog", str(cached_catalog)]) == 2
    assert "no feature set 'nope'" in capsys.readouterr().err


def interp_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from agent.cli import main; sys.exit(main())", *args]


def stop(process: subprocess.Popen, stop_signal: int, interrupted_message: str) -> None:
    """Send Ctrl-C or kill -9; a Ctrl-C'd run must exit 130 saying how to resume."""
    process.send_signal(stop_signal)
    _, err = process.communicate(timeout=60)
    if stop_signal == signal.SIGINT:
        assert process.returncode == 130 and interrupted_message in err
    else:
        assert process.returncode == -signal.SIGKILL


def examples_of(catalog: Path) -> list:
    with duckdb.connect(str(catalog), read_only=True) as con:
        return con.execute("SELECT feature, bucket, rank, window_id, max_act, acts FROM examples "
                           "ORDER BY feature, bucket, rank").fetchall()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_cache_resumes_to_the_same_result(stop_signal, tmp_path, tiny_models):
    corpus = tmp_path / "big.txt"
    corpus.write_text("\n".join(sentences(3000)))
    args = ["cache", "--model", str(tiny_models["llama"]), "--hook", "mlp.1", "--corpus", str(corpus),
            "--tokens", "12000", "--window", "16", "--batch-size", "1", "--top-k", "5", "--quantiles", "4",
            "--per-quantile", "2", "--random", "3", "--checkpoint-seconds", "0", "--no-progress"]
    reference = tmp_path / "ref.duckdb"
    assert main([*args, "--catalog", str(reference)]) == 0

    catalog = tmp_path / "c.duckdb"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    process = subprocess.Popen(interp_command(*args, "--catalog", str(catalog)), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = tmp_path / "c.duckdb.runs"
    deadline = time.monotonic() + 60
    while not (runs.exists() and any(runs.glob("*.pt"))) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    stop(process, stop_signal, "rerun the same command to resume")
    with duckdb.connect(str(catalog), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM feature_sets").fetchone() == (0,)

    resumed = subprocess.run(interp_command(*args, "--catalog", str(catalog)), env=env, capture_output=True,
                             text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming run" in resumed.stderr
    assert examples_of(catalog) == examples_of(reference)
    shutil.rmtree(runs, ignore_errors=True)


def test_sae_load_and_eval_record_the_sae(tmp_path, tiny_models, text_corpus, capsys):
    from tests.tools.test_sae_eval import lossless_sae

    folder = lossless_sae(32, "resid_post.1").save_saelens(tmp_path / "sae")
    catalog = tmp_path / "c.duckdb"
    common = ["--model", str(tiny_models["llama"]), "--corpus", str(text_corpus), "--catalog", str(catalog)]
    assert main(["sae", "load", str(folder), "--tokens", "500", *common, *FAST]) == 0
    assert main(["sae", "eval", "--sae", str(folder), "--tokens", "256", "--window", "16", *common]) == 0
    shown = capsys.readouterr().out
    assert "fvu" in shown and "loss_recovered" in shown
    with duckdb.connect(str(catalog), read_only=True) as con:
        kind, source_sha = con.execute("SELECT kind, source_sha256 FROM feature_sets").fetchone()
        fvu, recovered, sae_sha, tokens = con.execute(
            "SELECT fvu, loss_recovered, sae_sha256, tokens FROM sae_evals").fetchone()
        statuses = con.execute("SELECT kind, status FROM runs ORDER BY started_at").fetchall()
    assert kind == "sae" and sae_sha == source_sha
    assert fvu == pytest.approx(0.0, abs=1e-9) and recovered == pytest.approx(1.0, abs=1e-4) and tokens > 0
    assert statuses == [("cache", "complete"), ("sae_eval", "complete")]
    assert main(["sae", "eval", *common]) == 2
    assert "--sae is required" in capsys.readouterr().err


def test_sae_train_writes_an_sae_the_loaders_read_and_eval_scores(tmp_path, tiny_models, text_corpus, capsys):
    from tools.sae.formats import load_sae

    out = tmp_path / "trained"
    train = ["sae", "train", "--model", str(tiny_models["gemma3"]), "--hook", "resid_post.1", "--corpus",
             str(text_corpus), "--tokens", "1500", "--expansion", "2", "--k", "4", "--buffer-tokens", "512",
             "--batch-tokens", "128", "--out", str(out), "--no-progress"]
    assert main(train) == 0
    sae = load_sae(out)
    assert (sae.hook, sae.d_in, sae.d_sae, sae.k, sae.activation) == ("resid_post.1", 32, 64, 4, "topk")
    assert json.loads((out / "cfg.json").read_text())["metadata"]["hf_hook_name"] == "model.layers.1"
    capsys.readouterr()
    assert main(train) == 2
    assert "is not empty; choose another --out" in capsys.readouterr().err
    assert main(["sae", "eval", "--sae", str(out), "--model", str(tiny_models["gemma3"]), "--corpus",
                 str(text_corpus), "--tokens", "256", "--window", "16", "--catalog", str(tmp_path / "c.duckdb")]) == 0
    assert "mean_l0" in capsys.readouterr().out


def test_ablate_and_steer_a_cached_sae_latent(tmp_path, tiny_models, text_corpus, capsys):
    from tools.testing.tiny import random_sae

    sae = random_sae(32, 64, "resid_post.2", seed=5)
    sae.b_enc.zero_()
    folder = sae.save_saelens(tmp_path / "sae")
    catalog = ["--catalog", str(tmp_path / "c.duckdb")]
    assert main(["sae", "load", str(folder), "--model", str(tiny_models["llama"]), "--corpus", str(text_corpus),
                 "--tokens", "500", *catalog, *FAST]) == 0
    capsys.readouterr()
    assert main(["ablate", "resid_post.2-sae", "3", "--text", "the cat runs", "--text", "red blue green",
                 "--mode", "clamp", "--value", "4", *catalog]) == 0
    shown = capsys.readouterr().out
    assert "features 3 -> 4 (clamp)" in shown and "next-token loss:" in shown and "direct logit effect" in shown
    assert main(["ablate", "resid_post.2-sae", "3", "8", "--text", "the cat runs", "--mode", "mean", *catalog]) == 0
    shown = capsys.readouterr().out
    assert "features 3 -> " in shown and ", 8 -> " in shown and "(mean)" in shown
    assert main(["steer", "resid_post.2-sae", "3", "--prompt", "the cat", "--strength", "40",
                 "--max-new-tokens", "5", *catalog]) == 0
    shown = capsys.readouterr().out
    assert "without steering:" in shown and "with steering:" in shown
    assert main(["steer", "resid_post.2-sae", "3", "--prompt", "the cat", "--strength", "40",
                 "--max-new-tokens", "5", "--json", *catalog]) == 0
    steered = json.loads(capsys.readouterr().out)
    assert steered["feature"] == 3 and steered["without_steering"] != steered["with_steering"]
    assert steered["loss_edited"] != steered["loss_clean"] and len(steered["direct"]["promotes"]) == 10
    assert main(["ablate", "resid_post.2-sae", "3", "--text", "the cat runs", "--json", *catalog]) == 0
    ablated = json.loads(capsys.readouterr().out)
    assert ablated["features"] == {"3": 0.0} and set(ablated["direct"]) == {"3"} and ablated["promoted"]
    assert main(["steer", "resid_post.2-sae", "64", "--prompt", "x", *catalog]) == 2
    assert "feature 64 is out of range; this feature set has features 0..63" in capsys.readouterr().err
    assert main(["ablate", "resid_post.2-sae", "3", *catalog]) == 2
    assert "give at least one --text" in capsys.readouterr().err


def test_experiments_refuse_a_model_whose_weights_changed_since_caching(tmp_path, tiny_models, text_corpus, capsys):
    import torch
    from transformers import AutoModelForCausalLM

    model = tmp_path / "model"
    shutil.copytree(tiny_models["gpt2"], model)
    catalog = tmp_path / "c.duckdb"
    assert main(["cache", "--model", str(model), "--hook", "mlp.1", "--corpus", str(text_corpus), "--tokens", "500",
                 "--catalog", str(catalog), *FAST]) == 0
    torch.manual_seed(1)
    AutoModelForCausalLM.from_config(AutoModelForCausalLM.from_pretrained(model).config).save_pretrained(model)
    assert main(["ablate", "mlp.1", "3", "--text", "the cat", "--device", "cpu", "--catalog", str(catalog)]) == 2
    assert "is not the one feature set" in capsys.readouterr().err
