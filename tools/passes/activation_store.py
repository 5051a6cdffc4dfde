"""MLP inputs and outputs of many layers, cached once on disk so a transcoder can train on them for several epochs.

On 2 CPU cores the subject model's forward is the dear part of training (one bare forward of Gemma 3 270M runs
at about 400 tokens/s); reading the same tokens again from disk is almost free. The store keeps, per layer,
`in_L.bin` and `out_L.bin`: raw bf16 rows [tokens, d_model] appended in corpus order, memory-mapped when read
(`torch.from_file`), so the whole store is shuffled across by index without loading it. bf16 halves the disk
cost (2 x 2 x d_model bytes per token and layer: 2.5 kB on Gemma 3 270M) and is the precision the models
themselves run in on a GPU; training upcasts each batch to fp32.

Resume: `store.json` records how many rows are whole and how many windows were read. Rows are appended before
the count is written, so a killed fill leaves at most some rows past the count, which the next fill cuts off.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from tools.errors import InterpError

STORE_FILE = "store.json"
ROW_DTYPE = torch.bfloat16


@dataclass
class StoreState:
    layers: list[int]
    d_model: int
    key: dict
    """What decides the rows (model, corpus, window, seed): a store made with another key is refused."""
    tokens: int = 0
    windows_done: int = 0


class ActivationStore:
    """Append-only per-layer rows of (MLP input, MLP output), in one folder."""

    def __init__(self, folder: Path, state: StoreState):
        self.folder = folder
        self.state = state

    @classmethod
    def open(cls, folder: Path | str, layers: list[int], d_model: int, key: dict) -> "ActivationStore":
        """The store in `folder`, made empty if there is none; one made with another key or layers is refused."""
        folder = Path(folder)
        meta = folder / STORE_FILE
        if meta.exists():
            state = StoreState(**json.loads(meta.read_text()))
            if state.key != key or not set(layers) <= set(state.layers) or state.d_model != d_model:
                raise InterpError(f"activation store '{folder}' was filled with other settings ({meta}); delete it or "
                                  "choose another --store")
            store = cls(folder, state)
            store._cut_to_count()
            return store
        folder.mkdir(parents=True, exist_ok=True)
        store = cls(folder, StoreState(sorted(layers), d_model, key))
        for layer in store.state.layers:
            for side in ("in", "out"):
                store._path(side, layer).write_bytes(b"")
        store._save()
        return store

    @property
    def tokens(self) -> int:
        return self.state.tokens

    @property
    def bytes_per_token(self) -> int:
        """Disk cost of one token, all layers."""
        return 2 * len(self.state.layers) * self.state.d_model * ROW_DTYPE.itemsize

    def append(self, rows: dict[int, tuple[torch.Tensor, torch.Tensor]], windows_done: int) -> None:
        """Add each layer's (inputs, outputs) [n, d_model], the same n for all, then count them as whole."""
        counts = {len(x) for x, _ in rows.values()} | {len(y) for _, y in rows.values()}
        if len(counts) != 1 or set(rows) != set(self.state.layers):
            raise ValueError(f"append needs every layer {self.state.layers} with the same row count, got {counts}")
        for layer, (x, y) in rows.items():
            for side, tensor in (("in", x), ("out", y)):
                with open(self._path(side, layer), "ab") as file:
                    file.write(_as_bytes(tensor))
        self.state.tokens += counts.pop()
        self.state.windows_done = windows_done
        self._save()

    def rows(self, side: str, layer: int) -> torch.Tensor:
        """[tokens, d_model] bf16, memory-mapped: indexing reads only the rows asked for."""
        if self.state.tokens == 0:
            return torch.empty((0, self.state.d_model), dtype=ROW_DTYPE)
        flat = torch.from_file(str(self._path(side, layer)), shared=False,
                               size=self.state.tokens * self.state.d_model, dtype=ROW_DTYPE)
        return flat.view(self.state.tokens, self.state.d_model)

    def _path(self, side: str, layer: int) -> Path:
        return self.folder / f"{side}_{layer}.bin"

    def _save(self) -> None:
        partial = self.folder / (STORE_FILE + ".partial")
        partial.write_text(json.dumps(self.state.__dict__, indent=1))
        os.replace(partial, self.folder / STORE_FILE)

    def _cut_to_count(self) -> None:
        whole = self.state.tokens * self.state.d_model * ROW_DTYPE.itemsize
        for layer in self.state.layers:
            for side in ("in", "out"):
                path = self._path(side, layer)
                if path.stat().st_size < whole:
                    raise InterpError(f"activation store file '{path}' is shorter than {STORE_FILE} says; delete the "
                                      "store to fill it again")
                os.truncate(path, whole)


def _as_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.detach().to(device="cpu", dtype=ROW_DTYPE).contiguous().view(torch.int16).numpy().tobytes()
