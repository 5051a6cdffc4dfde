"""`interp export` (Parquet, Neuronpedia batches) and `interp explain-records` (no subject model)."""

import json

import duckdb
import pytest

from agent.cli import main
from agent.labeling.config import LabelConfig
from agent.labeling.explain_records import explain_records
from agent.labeling.pipeline import run_label
from tests.agent.test_label import catalog, judge_or_explain, scripted_factory  # noqa: F401  (fixture)
from tests.evals.test_scoring import paris_record
from tests.scripted import ScriptedChat, is_judge


def test_export_parquet_and_neuronpedia(catalog, tmp_path, capsys):  # noqa: F811
    config = LabelConfig(llm="openai:scripted", scorers="detection,embedding", limit=2, device="cpu")
    run_label(config, "resid_post.1", catalog, progress=False,
              llm_factory=scripted_factory(ScriptedChat(judge_or_explain)))
    assert main(["export", "resid_post.1", "--out", str(tmp_path / "pq"), "--catalog", str(catalog)]) == 0
    folder = tmp_path / "pq"
    with duckdb.connect() as con:
        n, dims = con.execute(f"SELECT count(*), min(len(embedding)) FROM '{folder}/explanations.parquet'").fetchone()
        metrics = con.execute(f"SELECT DISTINCT scorer, metric FROM '{folder}/scores.parquet' ORDER BY ALL").fetchall()
        features = con.execute(f"SELECT count(*) FROM '{folder}/features.parquet'").fetchone()[0]
    assert (n, dims, features) == (2, 384, 64)
    assert metrics == [("detection", "auroc"), ("detection", "balanced_accuracy"), ("embedding", "auroc")]

    # The Neuronpedia layout is replayed into their schema in tests/agent/test_neuronpedia.py.
    assert main(["export", "resid_post.1", "--format", "neuronpedia", "--out", str(tmp_path / "np"),
                 "--catalog", str(catalog)]) == 0
    for fmt, folder in (("parquet", "pq"), ("neuronpedia", "np")):  # a second export never mixes with the first
        assert main(["export", "resid_post.1", "--format", fmt, "--out", str(tmp_path / folder),
                     "--catalog", str(catalog)]) == 2
        assert f"--out '{tmp_path / folder}' is not an empty folder" in capsys.readouterr().err


def test_a_model_name_never_leads_an_export_outside_its_folder():
    from agent.neuronpedia.names import np_model_id

    assert [np_model_id(name, None) for name in ("..", ".", "", "/models/Gemma 3", "a/../..")] == [
        "model", "model", "model", "gemma-3", "model"]


def write_records(path, n_features: int = 2) -> None:
    lines = []
    for feature in range(n_features):
        record = paris_record(seed=feature)
        records = record.explain_top + record.score_active + record.score_random
        lines.append(json.dumps({"index": feature, "records": [{"tokens": r.tokens, "values": r.values}
                                                                for r in records]}))
    path.write_text("\n".join(lines))


def test_explain_records_explains_and_scores_without_a_model(tmp_path):
    path = tmp_path / "records.jsonl"
    write_records(path)
    prompts = []

    def answer(prompt: str) -> str:
        prompts.append(prompt)
        return judge_or_explain(prompt).replace("words about animals", "the word paris")

    config = LabelConfig(llm="openai:scripted", scorers="detection,embedding", device="cpu")
    rows = explain_records(config, path, tmp_path / "out.jsonl", llm_factory=lambda spec: ScriptedChat(answer))
    assert [row["text"] for row in rows] == ["the word paris"] * 2
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [row["feature"] for row in written] == ["0", "1"]
    scores = {(s["scorer"], s["metric"]): s for s in written[0]["scores"]}
    assert scores[("embedding", "auroc")]["value"] > 0.9 and scores[("detection", "auroc")]["n"] == 24


def test_explain_records_keeps_every_finished_feature_when_a_later_one_crashes(tmp_path):
    path = tmp_path / "records.jsonl"
    write_records(path)
    explained = []

    def answer(prompt: str) -> str:
        if not is_judge(prompt):
            explained.append(prompt)
            if len(explained) == 2:
                raise RuntimeError("the machine ran out of memory")
        return judge_or_explain(prompt)

    config = LabelConfig(llm="openai:scripted", scorers="detection", device="cpu", concurrency=1)
    with pytest.raises(RuntimeError, match="out of memory"):
        explain_records(config, path, tmp_path / "out.jsonl", llm_factory=lambda spec: ScriptedChat(answer))
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(row["feature"], row["status"]) for row in written] == [("0", "ok")]


def test_explain_records_cli_with_the_token_statistics_explainer(tmp_path, capsys):
    path = tmp_path / "records.json"
    record = paris_record()
    path.write_text(json.dumps([{"tokens": r.tokens, "values": r.values}
                                for r in record.explain_top + record.score_random]))
    assert main(["explain-records", str(path), "--explainer", "token-stats", "--scorers", "embedding",
                 "--device", "cpu"]) == 0
    assert '"paris"' in capsys.readouterr().out


@pytest.mark.parametrize("content, message", [
    ("not json at all {", "neither JSON nor JSONL"),
    ('[{"tokens": ["a"], "values": ["x"]}]', "could not convert string to float"),
    ('[{"feature": 1}]', "no 'records'"),
    ('[{"tokens": ["a", "b"], "values": [1.0]}]', "one value per token"),
    ('[{"tokens": ["a", "b"], "values": [1.0, Infinity]}]', "record 0 value 1: inf is not a finite number"),
    ('{"feature": 7, "records": [{"tokens": ["a"], "values": [NaN]}]}', "feature 7 record 0 value 0: nan is not"),
])
def test_malformed_records_files_are_one_line_errors(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert main(["explain-records", str(path), "--explainer", "token-stats", "--scorers", ""]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_catalog_from_before_labeling_reads_without_labels(tmp_path, capsys):
    """A schema-2 catalog opened read-only is never upgraded: search finds nothing, export says why."""
    from tools.catalog import Catalog

    path = tmp_path / "old.duckdb"
    with Catalog(path):
        pass
    with duckdb.connect(str(path)) as con:
        con.execute("DROP TABLE explanations; DROP TABLE scores; UPDATE schema_info SET value = '2'")
    assert main(["search", "cities", "--catalog", str(path)]) == 0
    assert "no explanations" in capsys.readouterr().out
    assert main(["export", "mlp.1", "--out", str(tmp_path / "o"), "--catalog", str(path)]) == 2
    assert "has no labels yet" in capsys.readouterr().err
