"""Corpus sources, their errors, seeded order, and windowing."""

import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tools.data.corpus import CorpusSpec, describe, iter_documents, shuffled
from tools.data.windows import content_mask, token_windows
from tools.errors import InterpError
from tools.testing.tiny import tiny_tokenizer


def test_text_glob_yields_one_document_per_file(text_corpus):
    documents = list(iter_documents(CorpusSpec(str(text_corpus))))
    assert len(documents) == 3
    assert describe(CorpusSpec(str(text_corpus)))["bytes"] == sum(len(d.encode()) for d in documents)


def test_jsonl_parquet_and_hf_dataset_read_the_named_column(tmp_path):
    rows = [{"body": f"text number {i}", "other": i} for i in range(5)]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    datasets.Dataset.from_list(rows).save_to_disk(tmp_path / "ds")
    expected = [r["body"] for r in rows]
    for source in ("a.jsonl", "a.parquet", "ds"):
        assert list(iter_documents(CorpusSpec(str(tmp_path / source), text_column="body"))) == expected


def test_embedded_fortunes_skip_offensive_files():
    files = describe(CorpusSpec("fortunes"))["files"]
    assert any(f.endswith("/fortunes") for f in files)
    assert not any(f.endswith("-o") or f.endswith(".dat") for f in files)
    first = next(iter_documents(CorpusSpec("fortunes")))
    assert "$FreeBSD$" not in first and first.strip()


@pytest.mark.parametrize("make_bad, message", [
    (lambda p: p.joinpath("bin.txt").write_bytes(b"\x00\x01\x02binary"), "is not text"),
    (lambda p: p.joinpath("bin.txt").write_bytes(b"caf\xe9 latin-1"), "is not UTF-8 text"),
    (lambda p: pq.write_table(pa.table({"body": ["x"]}), p / "bin.parquet"), "has no column 'text'; columns: body"),
    (lambda p: p.joinpath("bin.jsonl").write_text('{"text": "ok"}\nnot json'), "line 2 is not valid JSON"),
])
def test_bad_corpus_files_name_the_file_and_the_problem(tmp_path, make_bad, message):
    make_bad(tmp_path)
    with pytest.raises(InterpError, match=message):
        list(iter_documents(CorpusSpec(str(tmp_path / "bin.*"))))


def test_missing_sources_are_clear_errors(tmp_path):
    with pytest.raises(InterpError, match="matches no files"):
        describe(CorpusSpec(str(tmp_path / "nothing*.txt")))
    with pytest.raises(InterpError, match="is not a saved HF dataset"):
        describe(CorpusSpec(str(tmp_path)))


def test_shuffle_is_seeded_and_keeps_every_document():
    documents = [f"doc {i}" for i in range(50)]
    first = list(shuffled(documents, seed=3, buffer_size=8))
    assert first == list(shuffled(documents, seed=3, buffer_size=8))
    assert first != list(shuffled(documents, seed=4, buffer_size=8))
    assert sorted(first) == sorted(documents)


def test_windows_start_with_bos_pack_documents_and_respect_the_budget():
    tokenizer = tiny_tokenizer()
    documents = ["the cat runs", "a dog sleeps quickly", "one two three"] * 20
    windows = token_windows(documents, tokenizer, length=8, prepend_bos=True, max_tokens=50)
    assert windows.shape == (7, 8)  # ceil(50 / 8) windows
    assert (windows[:, 0] == tokenizer.bos_token_id).all()
    first_content = tokenizer.convert_ids_to_tokens(windows[0, 1:].tolist())
    assert first_content == ["the", "cat", "runs", "<bos>", "a", "dog", "sleeps"]
    mask = content_mask(windows, tokenizer)
    assert not mask[:, 0].any() and not mask[0, 4] and mask[0, 1]


def test_windows_without_bos_are_pure_content():
    tokenizer = tiny_tokenizer()
    windows = token_windows(["the cat runs"] * 10, tokenizer, length=4, prepend_bos=False, max_tokens=1000)
    assert windows.shape == (10, 4)  # 40 tokens: 3 words and a separator per document
    assert windows[0].tolist() == tokenizer.convert_tokens_to_ids(["the", "cat", "runs", "<bos>"])


def test_held_out_part_is_disjoint_from_train_and_stable():
    from tools.data.corpus import documents_in_part

    documents = [f"fortune number {i}" for i in range(500)]
    train = list(documents_in_part(documents, "train"))
    held_out = list(documents_in_part(documents, "held_out"))
    assert not set(train) & set(held_out) and len(train) + len(held_out) == 500
    assert 20 < len(held_out) < 80
    assert held_out == list(documents_in_part(reversed(documents), "held_out"))[::-1]
    with pytest.raises(InterpError, match="unknown corpus part 'test'"):
        list(documents_in_part(documents, "test"))


PEAK_MEMORY = """
import resource, sys
from tools.data.corpus import CorpusSpec, documents_in_part, iter_documents, shuffled
from tools.data.windows import token_windows
from tools.testing.tiny import tiny_tokenizer
tokenizer = tiny_tokenizer()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
documents = shuffled(documents_in_part(iter_documents(CorpusSpec(sys.argv[1])), "all"), 0)
windows = token_windows(documents, tokenizer, 64, True, 2000)
print(windows.shape[0], (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_one_huge_document_under_a_token_budget_takes_bounded_memory(tmp_path):
    """A 40 MB one-document file with a 2,000-token budget: read and tokenized only as far as the budget
    needs, so the memory it adds is the same as for a small file (it was 4.6 GB, the file read and
    tokenized whole)."""
    import subprocess
    import sys

    from tools.testing.tiny import sentences

    text = " ".join(sentences(400))
    small, huge = tmp_path / "small.txt", tmp_path / "huge.txt"
    small.write_text(text)
    with huge.open("w") as handle:
        while handle.tell() < 40 * 2**20:
            handle.write(text + " ")
    peaks = {}
    for path in (small, huge):
        out = subprocess.run([sys.executable, "-c", PEAK_MEMORY, str(path)], capture_output=True, text=True,
                             check=True).stdout.split()
        assert int(out[0]) == 32  # ceil(2000 / 64) windows either way
        peaks[path.name] = int(out[1])
    assert peaks["huge.txt"] < peaks["small.txt"] + 32, peaks  # MiB


def test_long_documents_are_cut_into_bounded_pieces_at_whitespace(tmp_path):
    from tools.data.corpus import CHUNK_CHARS

    path = tmp_path / "long.jsonl"
    long_text = " ".join(["word"] * 10_000)
    path.write_text(json.dumps({"text": long_text}) + "\n" + json.dumps({"text": "short one"}) + "\n")
    pieces = list(iter_documents(CorpusSpec(str(path))))
    assert all(len(piece) <= CHUNK_CHARS for piece in pieces) and pieces[-1] == "short one"
    assert "".join(pieces[:-1]) == long_text and all(piece.endswith(" ") for piece in pieces[:-2])
