"""How the labeling process is set up for a long run of many small features: torch's threads and Python's
cyclic garbage collector, each changed for the run's block only and put back after."""

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_COLLECTION_EVERY = 20_000
"""New container objects between collections of the youngest generation (Python's default: 700)."""


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's CPU threads set to `count` for the block (None: unchanged)."""
    import torch

    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def fewer_collections(young_every: int = YOUNG_COLLECTION_EVERY) -> Iterator[None]:
    """The collector spared what setup built and the run's churn. A feature's work counts ~2,000 new
    containers against the young threshold (parsed answers, log-probability tables, records), nearly all
    soon freed by reference counting, so at the default threshold the collector ran ~3 young and a third
    of a middle collection per feature, and every hundred or so features a full one that walked the
    models and tokenizers loaded at setup (measured with gc.callbacks in a replay of
    benchmarks/label_capacity.py: ~4.5 ms of a feature's ~45 ms of CPU, all of it holding the GIL the
    run's threads share). Here what is alive when the block starts is frozen out of every scan
    (`gc.freeze`) and young collections come every `young_every` containers: cycles are still
    collected, only later, and the memory they wait in stays bounded."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(young_every, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
