"""Endpoint answers read with simdjson: its parsed document makes Python objects only for what is read, and
an answer is mostly what we do not read (20 alternatives for every token of a simulation prompt; each of
a judge's alternatives with its UTF-8 bytes as a list of numbers)."""

import queue
from collections.abc import Callable
from typing import TypeVar

import simdjson

Extracted = TypeVar("Extracted")


class ParserPool:
    """A few simdjson parsers, each reused, and parsing waits for a free one. A fresh parser allocates
    buffers several times the answer's size and the kernel faults them in page by page: for a feature's
    2.6 MB answer that doubled the parse (~4.5 -> ~9 ms). A parser's document lives as long as anything
    read from it, so a parser goes back only after `extract` is done. Parsing holds the GIL, so more
    parsers than cores buy nothing; with one per call in flight (64) a run made hundreds of fresh ones
    (~800 page faults a feature) and kept their memory."""

    def __init__(self, size: int = 4):
        self.free: queue.SimpleQueue[simdjson.Parser | None] = queue.SimpleQueue()
        for _ in range(size):
            self.free.put(None)  # made when first needed

    def read(self, body: bytes, extract: Callable[[simdjson.Object], Extracted]) -> Extracted:
        """`extract` of the parsed answer, which must return only plain Python values (nothing of the
        document), so the parser can be reused; one whose document something still holds is replaced.
        ValueError when the body is not JSON or not a JSON object."""
        parser = self.free.get()
        try:
            if parser is None:
                parser = simdjson.Parser()
            try:
                document = parser.parse(body)
            except RuntimeError:  # something still holds this parser's last document
                parser = simdjson.Parser()
                document = parser.parse(body)
            if not isinstance(document, simdjson.Object):
                raise ValueError("the answer is not a JSON object")
            result = extract(document)
            del document
            return result
        finally:
            self.free.put(parser)


PARSERS = ParserPool()


def plain(value: object) -> object:
    """A value of the document as Python values (a whole object or array made at once, in C)."""
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value
