"""What every command promises about its output: results on stdout, logs on stderr (so `--json` is pure JSON),
Ctrl-C is exit 130 with one line, and building the parser or reading the catalog loads no torch."""

import json
import subprocess
import sys
from pathlib import Path

from agent.cli import EXIT_STOPPED, main
from tools.testing.tiny import cache_tiny_catalog


def test_json_output_is_pure_json_and_the_logs_go_to_stderr(tmp_path, tiny_models, text_corpus, capsys):
    catalog = cache_tiny_catalog(tmp_path / "c.duckdb", tiny_models["gpt2"], text_corpus, tmp_path / "sae")
    capsys.readouterr()
    assert main(["label", "resid_post.1", "--explainer", "token-stats", "--scorers", "embedding", "--limit", "3",
                 "--device", "cpu", "--catalog", str(catalog), "--no-progress", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # nothing but the JSON
    assert result["labeled"] == 3 and len(result["features"]) == 3
    assert all(row["scores"] for row in result["features"])
    assert "labeling 3 of" in captured.err and "config:" in captured.err


def test_a_hook_name_takes_the_newest_set_and_says_which(tmp_path, tiny_models, text_corpus, capsys):
    catalog = tmp_path / "c.duckdb"
    common = ["cache", "--model", str(tiny_models["gpt2"]), "--hook", "mlp.1", "--corpus", str(text_corpus),
              "--window", "16", "--batch-size", "8", "--top-k", "5", "--quantiles", "4", "--per-quantile", "2",
              "--random", "3", "--no-progress", "--catalog", str(catalog)]
    assert main([*common, "--tokens", "600"]) == 0
    assert main([*common, "--tokens", "900"]) == 0
    capsys.readouterr()
    assert main(["features", "mlp.1", "--catalog", str(catalog)]) == 0
    captured = capsys.readouterr()
    said = [line for line in captured.err.splitlines() if line.startswith("mlp.1: the newest of its 2 feature sets")]
    assert len(said) == 1, captured.err
    import duckdb

    with duckdb.connect(str(catalog), read_only=True) as con:
        (newest,), (older,) = con.execute("SELECT feature_set_id FROM feature_sets ORDER BY created_at DESC").fetchall()
    assert f"mlp.1: the newest of its 2 feature sets, {newest} " in said[0] and said[0].endswith(older)
    assert newest in captured.out and older not in captured.out
    assert main(["features", "mlp.1", "2", "-n", "3", "--json", "--catalog", str(catalog)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["feature_set"] == newest and shown["feature"] == 2 and len(shown["examples"]) == 3
    assert all(len(example["tokens"]) == len(example["acts"]) for example in shown["examples"])


def test_ctrl_c_outside_a_saving_loop_is_exit_130_with_one_line(monkeypatch, capsys):
    def interrupted(_args):
        raise KeyboardInterrupt

    from agent.cli import features

    monkeypatch.setattr(features, "command_features", interrupted)
    assert main(["features", "--catalog", "nowhere.duckdb"]) == EXIT_STOPPED
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == ["stopped (Ctrl-C); finished work is saved, and rerunning the command resumes it"]


def test_the_parser_the_catalog_views_and_search_load_no_torch(tmp_path, tiny_models, text_corpus):
    catalog = cache_tiny_catalog(tmp_path / "c.duckdb", tiny_models["gpt2"], text_corpus, tmp_path / "sae")
    assert main(["label", "resid_post.1", "--explainer", "token-stats", "--scorers", "", "--limit", "4",
                 "--device", "cpu", "--catalog", str(catalog), "--no-progress"]) == 0
    program = (
        "import sys\n"
        "from agent.cli import build_parser, main\n"
        "build_parser().format_help()\n"
        f"assert main(['features', 'resid_post.1', '--catalog', {str(catalog)!r}]) == 0\n"
        f"assert main(['features', 'resid_post.1', '3', '--catalog', {str(catalog)!r}]) == 0\n"
        f"assert main(['search', 'the tokens', '--json', '--catalog', {str(catalog)!r}]) == 0\n"
        "print(sorted(name for name in ('torch', 'transformers', 'sentence_transformers') if name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert '"similarity"' in done.stdout  # the search found the labels
