"""Every streamed window's non-zero SAE codes, so the per-token values of the windows a latent keeps are
gathered once, when the catalog is written, instead of carried in every slot while streaming.

A slot holding its window's values costs window x 4 bytes per latent per slot whatever the SAE's
sparsity; the codes cost ~14 bytes per non-zero (k per token for TopK), shared by every latent and slot
that keeps the window. Entries are kept sorted by (window, latent, position) batch by batch (windows
arrive in order), so a gather is two binary searches per example.

This grows with the tokens streamed (k x 14 bytes a token: 45 MB per million tokens at k = 32), as
delphi's latent cache does (~28 bytes an entry), where the per-slot values grew with width instead.
"""

import numpy as np
import torch


class WindowCodes:
    def __init__(self, width: int):
        self.width = width
        self.keys: list[np.ndarray] = []
        """window * width + latent, int64, sorted."""
        self.positions: list[np.ndarray] = []
        self.values: list[np.ndarray] = []

    def append(self, window_ids: torch.Tensor, positions: torch.Tensor, latents: torch.Tensor,
               values: torch.Tensor) -> None:
        """One batch's non-zero codes: window_ids, positions, latents, values: [nnz]."""
        keys = (window_ids.long() * self.width + latents.long()).cpu().numpy()
        order = np.lexsort((positions.cpu().numpy(), keys))
        self.keys.append(keys[order])
        self.positions.append(positions.cpu().numpy().astype(np.int32)[order])
        self.values.append(values.float().cpu().numpy()[order])

    def _joined(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if len(self.keys) != 1:  # one array from here on: gathers and checkpoints read it whole
            self.keys = [np.concatenate(self.keys) if self.keys else np.zeros(0, np.int64)]
            self.positions = [np.concatenate(self.positions) if self.positions else np.zeros(0, np.int32)]
            self.values = [np.concatenate(self.values) if self.values else np.zeros(0, np.float32)]
        return self.keys[0], self.positions[0], self.values[0]

    def gather(self, latents: np.ndarray, window_ids: np.ndarray, length: int) -> np.ndarray:
        """[n, length] float32: latent latents[i]'s value at each token of window window_ids[i] (0 where absent)."""
        keys, positions, values = self._joined()
        wanted = window_ids.astype(np.int64) * self.width + latents.astype(np.int64)
        starts, ends = np.searchsorted(keys, wanted, "left"), np.searchsorted(keys, wanted, "right")
        counts = ends - starts
        out = np.zeros((len(wanted), length), dtype=np.float32)
        rows = np.repeat(np.arange(len(wanted)), counts)
        offset_in_range = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        entries = np.repeat(starts, counts) + offset_in_range
        out[rows, positions[entries]] = values[entries]
        return out

    def extend(self, other: "WindowCodes") -> None:
        """Fold in the codes of a later part of the stream (a Ray worker's shard, windows after these)."""
        keys, positions, values = other._joined()
        self.keys.append(keys)
        self.positions.append(positions)
        self.values.append(values)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.keys + self.positions + self.values)

    def state_dict(self) -> dict[str, torch.Tensor]:
        keys, positions, values = self._joined()
        return {"keys": torch.from_numpy(keys), "positions": torch.from_numpy(positions),
                "values": torch.from_numpy(values)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.keys, self.positions, self.values = ([state[name].cpu().numpy()] for name in ("keys", "positions",
                                                                                             "values"))
