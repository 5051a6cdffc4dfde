"""`interp export --format neuronpedia` replayed into Neuronpedia's own tables (tests/agent/fixtures/
neuronpedia_schema.sql, transcribed from their Prisma schema), loaded the way their admin import loads them."""

import gzip
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from agent.cli import main
from agent.labeling.config import LabelConfig
from agent.labeling.pipeline import run_label
from evals.compare import run_compare
from tests.agent.test_label import catalog, judge_or_explain, scripted_factory  # noqa: F401  (fixture)
from tests.scripted import ScriptedChat, is_judge
from tools.catalog import Catalog
from tools.testing.tiny import cache_tiny_catalog, save_tiny_model

SCHEMA = Path(__file__).with_name("fixtures") / "neuronpedia_schema.sql"
THEIR_SCORE_TYPES = ("eleuther_recall", "eleuther_fuzz", "eleuther_embedding")
"""Score types Neuronpedia already has: our export names them and writes no rows for them."""


def neuronpedia_database() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for statement in SCHEMA.read_text().split(";"):
        if "CREATE" in statement:
            con.execute(statement).fetchall()
    con.execute("INSERT INTO \"User\" VALUES ('interp-agent', 'interp-agent'), ('np', 'neuronpedia')").fetchall()
    con.execute("INSERT INTO \"ExplanationType\" (name, \"displayName\", description, \"creatorName\", \"creatorId\") "
                "VALUES ('oai_token-act-pair', 'OpenAI', '', 'neuronpedia', 'np')").fetchall()
    con.execute("INSERT INTO \"ExplanationModelType\" (name, \"displayName\", description, \"creatorName\") "
                "VALUES ('gpt-4o-mini', 'GPT-4o mini', '', 'neuronpedia')").fetchall()
    for name in THEIR_SCORE_TYPES:
        con.execute("INSERT INTO \"ExplanationScoreType\" (name, \"displayName\", description, \"creatorName\", "
                    "\"creatorId\") VALUES (?, ?, '', 'neuronpedia', 'np')", [name, name]).fetchall()
    return con


def columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [row[0] for row in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                                          "ORDER BY ordinal_position", [table]).fetchall()]


def prisma_create(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict]) -> None:
    """`prisma.<table>.create({data: line})` (and `upsert` for config rows): a key that is no field fails."""
    for row in rows:
        unknown = set(row) - set(columns(con, table))
        assert not unknown, f"{table} has no fields {unknown}"
        insert(con, table, [row], list(row))


def insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict], names: list[str]) -> int:
    values = pa.table({name: pa.array([row.get(name) for row in rows]) for name in names})
    before = con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0]
    con.register("incoming", values)
    quoted = ", ".join(f'"{name}"' for name in names)
    con.execute(f'INSERT INTO "{table}" ({quoted}) SELECT {quoted} FROM incoming ON CONFLICT DO NOTHING').fetchall()
    con.unregister("incoming")
    return con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0] - before


def import_jsonl(con: duckdb.DuckDBPyConnection, table: str, lines: list[str]) -> int:
    """`importJsonlString`: the first line's keys that are columns of the table are the columns; other keys
    are dropped; rows go in with ON CONFLICT DO NOTHING. Returns how many landed."""
    rows = [json.loads(line) for line in lines if line.strip()]
    first = list(rows[0])
    dropped = [key for key in first if key not in columns(con, table)]
    assert not dropped, f"{table}: keys {dropped} match no column and would be dropped silently"
    return insert(con, table, rows, [key for key in first if key in columns(con, table)])


def batches(folder: Path) -> list[str]:
    return [line for path in sorted(folder.glob("batch-*.jsonl.gz")) for line in gzip.open(path, "rt")]


def replay(con: duckdb.DuckDBPyConnection, source: Path) -> dict[str, tuple[int, int]]:
    """The admin import of one source folder after its config rows; per table (rows in files, rows landed)."""
    jsonl = {name: [json.loads(line) for line in (source / "config" / f"{name}.jsonl").read_text().splitlines()]
             for name in ("explanation_model_type", "explanation_type", "explanation_score_model",
                          "explanation_score_type")}
    for name, table in (("explanation_model_type", "ExplanationModelType"), ("explanation_type", "ExplanationType"),
                        ("explanation_score_model", "ExplanationScoreModel"),
                        ("explanation_score_type", "ExplanationScoreType")):
        prisma_create(con, table, jsonl[name])
    for name, table in (("model", "Model"), ("sourceset", "SourceSet"), ("source", "Source")):
        prisma_create(con, table, [json.loads(line) for line in (source / f"{name}.jsonl").read_text().splitlines()])
    counts = {}
    for folder, table in (("features", "Neuron"), ("activations", "Activation"), ("explanations", "Explanation"),
                          ("explanation_scores", "ExplanationScore")):
        lines = batches(source / folder)
        counts[table] = (len(lines), import_jsonl(con, table, lines))
    return counts


@pytest.fixture
def labeled(catalog):  # noqa: F811
    config = LabelConfig(llm="openai:scripted", scorers="detection,fuzzing,embedding", limit=3, device="cpu")
    run_label(config, "resid_post.1", catalog, progress=False,
              llm_factory=scripted_factory(ScriptedChat(judge_or_explain)))
    return catalog


def test_every_exported_row_loads_into_neuronpedias_tables(labeled, tmp_path):
    assert main(["export", "resid_post.1", "--format", "neuronpedia", "--out", str(tmp_path / "np"),
                 "--catalog", str(labeled)]) == 0
    (source,) = (tmp_path / "np").glob("*/*")
    assert source.parent.name == "tiny-gpt20" and source.name.startswith("1-resid-post-sae-")
    con = neuronpedia_database()
    counts = replay(con, source)
    assert all(written == landed > 0 for written, landed in counts.values()), counts
    assert counts["Neuron"][0] == 64 and counts["Explanation"][0] == 3 and counts["ExplanationScore"][0] == 9
    scored = con.execute('SELECT DISTINCT "explanationScoreTypeName" FROM "ExplanationScore" ORDER BY 1').fetchall()
    assert [row[0] for row in scored] == ["eleuther_embedding", "eleuther_fuzz", "eleuther_recall"]
    texts = con.execute('SELECT DISTINCT description FROM "Explanation"').fetchall()
    assert texts == [("words about animals",)]
    # A second import of the same export adds nothing (stable ids, ON CONFLICT DO NOTHING).
    again = {table: landed for table, (_, landed) in replay_rows_only(con, source).items()}
    assert set(again.values()) == {0}


def replay_rows_only(con, source):
    return {table: (0, import_jsonl(con, table, batches(source / folder))) for folder, table in (
        ("features", "Neuron"), ("activations", "Activation"), ("explanations", "Explanation"),
        ("explanation_scores", "ExplanationScore"))}


def test_the_replay_fails_a_row_without_a_required_field(labeled, tmp_path):
    """The check is real: an activation without its creatorId (NOT NULL, no default) does not load."""
    assert main(["export", "resid_post.1", "--format", "neuronpedia", "--out", str(tmp_path / "np"),
                 "--catalog", str(labeled)]) == 0
    (source,) = (tmp_path / "np").glob("*/*")
    path = source / "activations" / "batch-0.jsonl.gz"
    rows = [json.loads(line) for line in gzip.open(path, "rt")]
    with gzip.open(path, "wt") as handle:
        handle.writelines(json.dumps({k: v for k, v in row.items() if k != "creatorId"}) + "\n" for row in rows)
    with pytest.raises(duckdb.ConstraintException, match="creatorId"):
        replay(neuronpedia_database(), source)


def test_neuronpedia_names_and_overrides(labeled, tmp_path, capsys):
    assert main(["export", "resid_post.1", "--format", "neuronpedia", "--out", str(tmp_path / "np"),
                 "--np-model-id", "gpt2-small", "--np-source-id", "1-res-test", "--creator-id", "someone",
                 "--catalog", str(labeled)]) == 0
    source = tmp_path / "np" / "gpt2-small" / "1-res-test"
    assert json.loads((source / "sourceset.jsonl").read_text())["name"] == "res-test"
    explanation = json.loads(gzip.open(source / "explanations" / "batch-0.jsonl.gz", "rt").readline())
    assert explanation["authorId"] == "someone" and explanation["layer"] == "1-res-test"
    assert main(["export", "resid_post.1", "--format", "neuronpedia", "--out", str(tmp_path / "bad"),
                 "--np-source-id", "res", "--catalog", str(labeled)]) == 2
    assert "Neuronpedia source id 'res' must be" in capsys.readouterr().err


def neuronpedia_explanations(folder: Path, rows: list[dict]) -> Path:
    """A Neuronpedia dataset export's explanations, each row with their Explanation columns."""
    (folder / "explanations").mkdir(parents=True)
    with gzip.open(folder / "explanations" / "batch-0.jsonl.gz", "wt") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    return folder


def published(index: int, text: str, np_id: str) -> dict:
    return {"id": np_id, "modelId": "tiny", "layer": "1-res-test", "index": str(index), "description": text,
            "authorId": "someone", "typeName": "oai_token-act-pair", "explanationModelName": "gpt-4o-mini",
            "triggeredByUserId": None, "notes": None, "scoreV1": 0, "scoreV2": None}


def test_published_explanations_import_get_scored_and_export_with_their_ids(catalog, tmp_path, capsys):  # noqa: F811
    folder = neuronpedia_explanations(tmp_path / "np-in",
                                      [published(0, "words about animals", "cm1aaaaaaaaaaaaaaaaaaaaaa")])
    (folder / "explanations-gpt-4o-mini").mkdir()  # exports may hold one explanations folder per explaining model
    with gzip.open(folder / "explanations-gpt-4o-mini" / "batch-0.jsonl.gz", "wt") as handle:
        handle.write(json.dumps(published(2, "the letter e", "cm1bbbbbbbbbbbbbbbbbbbbbb")) + "\n")
    args = ["import", "neuronpedia", "resid_post.1", str(folder), "--device", "cpu", "--catalog", str(catalog)]
    assert main(args) == 0
    assert "imported 2 of 2 explanations of Neuronpedia source tiny/1-res-test" in capsys.readouterr().out
    assert main(args) == 0  # a second import adds nothing
    assert "imported 0 of 2" in capsys.readouterr().out

    config = LabelConfig(llm="openai:scripted", scorers="detection,embedding",
                         score_only="neuronpedia:oai_token-act-pair", device="cpu")
    chat = ScriptedChat(judge_or_explain)
    result = run_label(config, "resid_post.1", catalog, progress=False, llm_factory=scripted_factory(chat))
    assert result.targets == [0, 2] and result.labeled == 2
    assert chat.prompts and all(is_judge(prompt) for prompt in chat.prompts)  # nothing was explained
    with duckdb.connect(str(catalog), read_only=True) as con:
        scored = con.execute("SELECT e.explanation_id, e.llm, count(s.value) FROM explanations e JOIN scores s "
                             "USING (explanation_id) WHERE e.explainer = 'neuronpedia:oai_token-act-pair' "
                             "GROUP BY ALL ORDER BY 1").fetchall()
        explainers = con.execute("SELECT DISTINCT explainer FROM explanations").fetchall()
    assert [(i, llm) for i, llm, _ in scored] == [("np:cm1aaaaaaaaaaaaaaaaaaaaaa", "gpt-4o-mini"),
                                                  ("np:cm1bbbbbbbbbbbbbbbbbbbbbb", "gpt-4o-mini")]
    assert all(n == 3 for _, _, n in scored)  # detection's two metrics and embedding's one
    assert explainers == [("neuronpedia:oai_token-act-pair",)]

    # Ours on the same features, set beside theirs by `interp eval compare`.
    ours = LabelConfig(llm="openai:scripted", scorers="detection,embedding", features="0,2", device="cpu")
    run_label(ours, "resid_post.1", catalog, progress=False, llm_factory=scripted_factory(chat))
    comparison = run_compare(catalog, "resid_post.1", "neuronpedia:oai_token-act-pair", "oneshot",
                             ["detection", "embedding"])
    paired = {(r.subject, r.metric): r.n for r in comparison.rows}
    assert paired[("neuronpedia:oai_token-act-pair (gpt-4o-mini) - oneshot (scripted)", "detection auroc")] == 2

    assert main(["export", "resid_post.1", "--format", "neuronpedia", "--out", str(tmp_path / "np-out"),
                 "--catalog", str(catalog)]) == 0
    (source,) = (tmp_path / "np-out").glob("*/*")
    rows = sorted((json.loads(line) for line in batches(source / "explanations")), key=lambda row: row["index"])
    theirs = [(row["id"], row["index"], row["description"], row["typeName"], row["explanationModelName"])
              for row in rows if row["typeName"] == "oai_token-act-pair"]
    assert theirs == [("cm1aaaaaaaaaaaaaaaaaaaaaa", "0", "words about animals", "oai_token-act-pair", "gpt-4o-mini"),
                      ("cm1bbbbbbbbbbbbbbbbbbbbbb", "2", "the letter e", "oai_token-act-pair", "gpt-4o-mini")]
    # Their types already exist there: the export writes config rows only for ours (an upsert would overwrite).
    written_types = [json.loads(line)["name"] for line in (source / "config" / "explanation_type.jsonl").open()]
    assert written_types == ["interp-agent_oneshot"]
    counts = replay(neuronpedia_database(), source)
    assert all(written == landed for written, landed in counts.values()), counts


def test_an_import_that_does_not_fit_the_feature_set_writes_nothing(catalog, tmp_path, capsys):  # noqa: F811
    folder = neuronpedia_explanations(tmp_path / "np-in", [published(999, "far away", "cm1ccc")])
    # The old spelling (folder, then --feature-set) still works for one release, and says what to write.
    assert main(["import", "neuronpedia", str(folder), "--feature-set", "resid_post.1", "--device", "cpu",
                 "--catalog", str(catalog)]) == 2
    error = capsys.readouterr().err
    assert "names features [999] that feature set" in error
    assert "`--feature-set` is deprecated and goes in 0.2; write `interp import neuronpedia SET FOLDER`" in error
    with duckdb.connect(str(catalog), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM runs WHERE kind = 'import'").fetchall() == [(0,)]
    not_rows = neuronpedia_explanations(tmp_path / "np-bad", [published(1, "fine", "cm1ddd")])
    with gzip.open(not_rows / "explanations" / "batch-1.jsonl.gz", "wt") as handle:
        handle.write("[1, 2]\n")
    assert main(["import", "neuronpedia", "resid_post.1", str(not_rows), "--device", "cpu",
                 "--catalog", str(catalog)]) == 2
    assert "batch-1.jsonl.gz:1: expected a Neuronpedia Explanation row" in capsys.readouterr().err
    assert main(["label", "resid_post.1", "--score-only", "neuronpedia:nothing", "--llm", "openai:x",
                 "--base-url", "http://127.0.0.1:9/v1", "--catalog", str(catalog), "--device", "cpu"]) == 2
    assert "--score-only: no explanations by 'neuronpedia:nothing'" in capsys.readouterr().err


def their_activations(catalog_path: Path, folder: Path, features: list[int], shift: int = 0) -> None:
    """Activation rows as a Neuronpedia export holds them: each feature's values on the text of its top
    window, computed by our own model; with `shift`, each row carries another feature's values instead
    (what a different SAE of the same width would give)."""
    from tools.experiments.interventions import encode_text, load_feature_source

    subject, source, feature_set = load_feature_source(catalog_path, "resid_post.1", "cpu")
    rows = []
    with Catalog(catalog_path, read_only=True) as opened:
        for feature in features:
            for example in opened.examples(feature_set["feature_set_id"], feature, bucket="top")[:2]:
                input_ids = encode_text(subject, "".join(t for t in example["tokens"] if t != "<bos>"))
                values = source.read(subject, input_ids)[0, :, (feature + shift) % source.width].tolist()
                tokens = [subject.tokenizer.decode([i]) for i in input_ids[0].tolist()]
                rows.append({"id": f"act{len(rows)}", "modelId": "tiny", "layer": "1-res-test", "index": str(feature),
                             "tokens": tokens, "values": values, "maxValue": max(values)})
    (folder / "activations").mkdir()
    with gzip.open(folder / "activations" / "batch-0.jsonl.gz", "wt") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)


def test_an_export_whose_activations_are_not_our_features_is_refused(text_corpus, tmp_path, capsys):
    """Needs a tokenizer whose tokens join back into the text (byte-level BPE, as Neuronpedia's models have)."""
    model = save_tiny_model("gpt2", tmp_path / "tiny-gpt2-bpe", tokenizer="bpe")
    bpe_catalog = cache_tiny_catalog(tmp_path / "bpe.duckdb", model, text_corpus, tmp_path / "sae")
    rows = [published(f, f"feature {f}", f"cm1f{f:021d}") for f in range(6)]
    same = neuronpedia_explanations(tmp_path / "same", rows)
    their_activations(bpe_catalog, same, list(range(6)))
    other = neuronpedia_explanations(tmp_path / "other", rows)
    their_activations(bpe_catalog, other, list(range(6)), shift=7)
    args = ["--device", "cpu", "--catalog", str(bpe_catalog)]

    assert main(["import", "neuronpedia", "resid_post.1", str(other), *args]) == 2
    error = capsys.readouterr().err
    assert "Neuronpedia source tiny/1-res-test is not the features of resid_post.1" in error
    assert "--no-activation-check" in error
    assert main(["import", "neuronpedia", "resid_post.1", str(same), *args]) == 0
    assert "their activations agree with ours at r = 1.000 over" in capsys.readouterr().out
    with duckdb.connect(str(bpe_catalog), read_only=True) as con:
        (config,) = con.execute("SELECT config FROM runs WHERE kind = 'import'").fetchall()[0]
    assert json.loads(config)["activation_check"]["rows"] == 12
    assert main(["import", "neuronpedia", "resid_post.1", str(other), "--no-activation-check", *args]) == 0
