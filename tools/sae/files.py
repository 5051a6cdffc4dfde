"""Reading the files SAEs and transcoders come in: JSON configs, safetensors, npz, matrices oriented by their
shape, hook names other tools write. Shared by the SAE formats (formats.py) and the transcoder formats
(transcoders.py)."""

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from tools.errors import InterpError
from tools.model.hooks import hook_from_external_name


def oriented(tensor: torch.Tensor, rows: int, columns: int, name: str, source: Path) -> torch.Tensor:
    """`tensor` as [rows, columns], transposed when it was stored the other way round."""
    if rows == columns:
        raise InterpError(f"{source}: '{name}' is square ({rows} x {columns}); its orientation cannot be told "
                          "from its shape")
    if tuple(tensor.shape) == (rows, columns):
        return tensor
    if tuple(tensor.shape) == (columns, rows):
        return tensor.T.contiguous()
    raise InterpError(f"{source}: '{name}' has shape {tuple(tensor.shape)}; expected ({rows}, {columns}) "
                      f"or ({columns}, {rows}) from the biases")


def required(tensors: Mapping[str, torch.Tensor], name: str, source: Path) -> torch.Tensor:
    if name not in tensors:
        raise InterpError(f"{source}: missing tensor '{name}' (has: {', '.join(sorted(tensors))})")
    return tensors[name].float()


def read_json(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InterpError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InterpError(f"{path}: unreadable ({error})") from None
    if not isinstance(config, dict):
        raise InterpError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors only (safetensors cannot hold code); a damaged or foreign file is one line, not a traceback."""
    try:
        return load_file(path)
    except (SafetensorError, OSError) as error:
        raise InterpError(f"{path}: not a readable safetensors file ({str(error).splitlines()[0][:120]})") from None


def read_npz(path: Path) -> dict[str, torch.Tensor]:
    """Arrays only: pickled objects are refused (allow_pickle=False), as is anything that is not an npz."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: torch.from_numpy(np.asarray(archive[name])) for name in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise InterpError(f"{path}: not a readable npz of arrays ({str(error).splitlines()[0][:120]})") from None


def external_hook(name: str | None, source: Path) -> str | None:
    if name is None:
        return None
    hook = hook_from_external_name(name)
    if hook is None:
        raise InterpError(f"{source}: hook '{name}' is not one interp can read (residual stream, MLP neurons, "
                          "attention output)")
    return hook.name
