"""What every command promises about its output: results on stdout, logs on stderr (so `--json` is pure JSON),
Ctrl-C is exit 130 with one line, and building the parser or reading the catalog loads no torch."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert err.splitlines() == ["stopped (Ctrl-C)"]


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


def test_old_spellings_still_parse_and_say_what_to_write(capsys):
    from agent.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["ask", "mlp.6", "--feature", "68"])
    assert args.old_feature == 68
    args = parser.parse_args(["audit", "examples/concepts.yaml", "--feature-set", "mlp.6"])
    assert (args.feature_set, args.old_feature_set) == ("examples/concepts.yaml", "mlp.6")
    args = parser.parse_args(["mcp", "--max-tool-calls", "3", "--max-seconds", "9"])
    assert (args.session_tool_calls, args.session_seconds) == (3, 9.0)
    parser.parse_args(["ask", "mlp.6", "68", "--scorers", "detection"])  # accepted, never read
    said = capsys.readouterr().err.splitlines()
    assert said == [
        "interp: `--feature` is deprecated and goes in 0.2; write `interp ask SET FEATURE`",
        "interp: `--feature-set` is deprecated and goes in 0.2; write `interp audit SET CONCEPTS`",
        "interp: `--max-tool-calls` is deprecated and goes in 0.2; write --session-tool-calls (--max-tool-calls "
        "means per question in ask)",
        "interp: `--max-seconds` is deprecated and goes in 0.2; write --session-seconds (--max-seconds means per "
        "question in ask)",
        "interp: `--scorers` is deprecated and goes in 0.2; `interp ask` never read it; drop it"]
    with pytest.raises(SystemExit):  # never accepted, so not kept either
        parser.parse_args(["ask", "mlp.6", "68", "--limit", "3"])


def test_ctrl_c_stops_the_web_server_with_exit_130(tmp_path, tiny_models, text_corpus):
    """uvicorn shuts down gracefully on SIGINT and returns; the command line still reports Ctrl-C as Ctrl-C."""
    import signal

    from tools.testing.servers import free_port, running

    catalog = cache_tiny_catalog(tmp_path / "c.duckdb", tiny_models["gpt2"], text_corpus, tmp_path / "sae")
    port = free_port()
    command = [sys.executable, "-m", "agent.cli", "serve", "--catalog", str(catalog), "--port", str(port)]
    with running(command, f"http://127.0.0.1:{port}/") as server:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == EXIT_STOPPED
