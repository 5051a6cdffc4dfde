"""The activation store: rows read back as written (in bf16), a killed fill's extra rows cut, other settings
refused."""

import json

import pytest
import torch

from tools.errors import InterpError
from tools.passes.activation_store import STORE_FILE, ActivationStore


def test_rows_read_back_and_a_killed_fill_resumes_at_its_count(tmp_path):
    generator = torch.Generator().manual_seed(0)
    store = ActivationStore.open(tmp_path / "s", [1, 3], 8, {"model": "m"})
    batches = [{layer: (torch.randn((5, 8), generator=generator), torch.randn((5, 8), generator=generator))
                for layer in (1, 3)} for _ in range(3)]
    store.append(batches[0], windows_done=2)
    store.append(batches[1], windows_done=4)
    assert store.bytes_per_token == 2 * 2 * 8 * 2
    # Killed after writing the third batch's rows but before counting them.
    meta = json.loads((tmp_path / "s" / STORE_FILE).read_text())
    store.append(batches[2], windows_done=6)
    (tmp_path / "s" / STORE_FILE).write_text(json.dumps(meta))
    reopened = ActivationStore.open(tmp_path / "s", [1, 3], 8, {"model": "m"})
    assert reopened.tokens == 10 and reopened.state.windows_done == 4
    reopened.append(batches[2], windows_done=6)
    for layer in (1, 3):
        for side, index in (("in", 0), ("out", 1)):
            written = torch.cat([batch[layer][index] for batch in batches]).to(torch.bfloat16)
            assert torch.equal(reopened.rows(side, layer), written)
    with pytest.raises(InterpError, match="was filled with other settings"):
        ActivationStore.open(tmp_path / "s", [1, 3], 8, {"model": "other"})
    with pytest.raises(ValueError, match="same row count"):
        reopened.append({1: (torch.zeros(2, 8), torch.zeros(2, 8)), 3: (torch.zeros(3, 8), torch.zeros(3, 8))}, 7)
