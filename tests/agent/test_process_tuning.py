"""The label run's process settings hold inside their block and are put back after it, even on errors."""

import gc
import weakref

import pytest

from agent.labeling.process_tuning import fewer_collections


class Node:
    def __init__(self):
        self.other: "Node | None" = None


def test_the_collector_is_spared_in_the_block_and_put_back_after_it_even_on_an_error():
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    with pytest.raises(RuntimeError, match="boom"), fewer_collections(young_every=12_345):
        assert gc.get_threshold() == (12_345, *before[1:])
        assert gc.get_freeze_count() > frozen  # what was alive is out of the scans
        raise RuntimeError("boom")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen


def test_cycles_made_in_the_block_are_still_collected():
    with fewer_collections():
        first, second = Node(), Node()
        first.other, second.other = second, first
        watched = weakref.ref(first)
        del first, second
        gc.collect()
        assert watched() is None
