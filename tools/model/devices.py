"""Device and dtype choice: CUDA with bf16 when present, Apple MPS next, CPU with fp32 otherwise."""

import torch

from tools.errors import InterpError

DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    if name not in DEVICES and not name.startswith("cuda:"):
        raise InterpError(f"unknown device '{name}'; expected one of: {', '.join(DEVICES)} (or cuda:N)")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InterpError(f"device '{name}' requested but CUDA is not available on this machine")
    if name == "mps" and not torch.backends.mps.is_available():
        raise InterpError("device 'mps' requested but MPS is not available on this machine")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """bf16 halves memory and doubles speed on accelerators; on CPU it is slower than fp32."""
    if name not in DTYPES:
        raise InterpError(f"unknown dtype '{name}'; expected one of: {', '.join(DTYPES)}")
    if name == "auto":
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    dtype = DTYPES[name]
    assert dtype is not None  # only 'auto' maps to None, and it is decided above
    return dtype
