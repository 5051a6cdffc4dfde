"""Digests that name exact weights in the catalog: of a file, and of a model folder's weight files."""

import hashlib
from pathlib import Path

from tools.errors import InterpError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".npz")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_folder_weights(folder: Path) -> str:
    """One digest over every weight file, in name order, so a re-saved identical model matches."""
    digest = hashlib.sha256()
    weight_files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    if not weight_files:
        raise InterpError(f"model folder '{folder}' has no weight files ({', '.join(WEIGHT_SUFFIXES)})")
    for path in weight_files:
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()
