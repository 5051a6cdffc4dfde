"""Loaders that reduce the SAE formats researchers bring to our canonical `SAE` (transcoders in those formats
and circuit-tracer's sets are read by tools/sae/transcoders.py).

- SAELens v6 and older flat configs: `cfg.json` + `sae_weights.safetensors`; standard (relu), topk or
  jumprelu; b_dec subtracted first per `apply_b_dec_to_input` (default yes).
- Gemma Scope 1: `params.npz` (W_enc, W_dec, b_enc, b_dec, threshold); jumprelu; no b_dec subtraction.
- Gemma Scope 2: `config.json` + `params.safetensors` (lowercase w_enc, w_dec, b_enc, b_dec, threshold);
  jump_relu; no b_dec subtraction; hook from `hf_hook_point_in`.
- sparsify: `cfg.json` + `sae.safetensors` (encoder.weight [d_sae, d_in], encoder.bias, W_dec, b_dec);
  topk; b_dec subtracted first; the hook is the folder's name (`layers.6`).

Each matrix's orientation is decided from its shape against (d_in, d_sae), read off the 1-D biases,
never from its name; a square matrix is refused because its orientation cannot be told.
"""

import math
from collections.abc import Mapping
from pathlib import Path

import torch

from tools.errors import InterpError
from tools.sae.autoencoder import SAE, SAELENS_CONFIG, SAELENS_WEIGHTS
from tools.sae.files import external_hook, oriented, read_json, read_npz, read_safetensors, required
from tools.sae.transcoders import (
    CIRCUIT_TRACER_CONFIG,
    LAYER_FILE,
    SAELENS_TRANSCODERS,
    layer_of,
    load_circuit_tracer,
    load_gemma_scope_2_transcoder,
    load_saelens_transcoder,
    load_sparsify_transcoder,
)

SAELENS_ACTIVATIONS = {"standard": "relu", "relu": "relu", "topk": "topk", "jumprelu": "jumprelu"}


def canonical(tensors: Mapping[str, torch.Tensor], names: dict[str, str], source: Path, **settings) -> SAE:
    """Build an SAE from tensors named per format (`names` maps W_enc/b_enc/W_dec/b_dec/threshold to
    the file's names); the biases fix d_in and d_sae, the matrices are oriented to match."""
    b_enc = required(tensors, names["b_enc"], source)
    b_dec = required(tensors, names["b_dec"], source)
    d_sae, d_in = b_enc.numel(), b_dec.numel()
    W_enc = oriented(required(tensors, names["W_enc"], source), d_in, d_sae, names["W_enc"], source)
    W_dec = oriented(required(tensors, names["W_dec"], source), d_sae, d_in, names["W_dec"], source)
    threshold = None
    if settings.get("activation") == "jumprelu":
        threshold = required(tensors, names["threshold"], source)
        if threshold.numel() != d_sae:
            raise InterpError(f"{source}: threshold has {threshold.numel()} entries; expected d_sae = {d_sae}")
    try:
        return SAE(W_enc, b_enc.reshape(d_sae), W_dec, b_dec.reshape(d_in), threshold=threshold, **settings)
    except ValueError as error:
        raise InterpError(f"{source}: {error}") from None


def load_saelens(folder: Path) -> SAE:
    config_path = folder / SAELENS_CONFIG
    config = read_json(config_path)
    meta = config.get("metadata") or config.get("meta") or {}
    architecture = config.get("architecture", "standard")
    if architecture in SAELENS_TRANSCODERS:
        return load_saelens_transcoder(folder, config, read_safetensors(folder / SAELENS_WEIGHTS))
    activation_name = config.get("activation_fn_str") if architecture == "standard" else architecture
    activation = SAELENS_ACTIVATIONS.get(activation_name or "relu")
    if activation is None:
        raise InterpError(f"{config_path}: unsupported SAE architecture '{architecture}' / activation "
                          f"'{activation_name}'; supported: standard (relu), topk, jumprelu")
    if config.get("normalize_activations", "none") not in ("none", None):
        raise InterpError(f"{config_path}: normalize_activations '{config['normalize_activations']}' is not "
                          "supported; fold the scaling into the weights first")
    weights_path = folder / SAELENS_WEIGHTS
    tensors = read_safetensors(weights_path)
    if "threshold" not in tensors and "log_threshold" in tensors:
        tensors["threshold"] = tensors["log_threshold"].exp()
    k = config.get("k") or (config.get("activation_fn_kwargs") or {}).get("k")
    hook_name = meta.get("hook_name") or config.get("hook_name") or config.get("hook_point")
    sae = canonical(
        tensors, {"W_enc": "W_enc", "b_enc": "b_enc", "W_dec": "W_dec", "b_dec": "b_dec", "threshold": "threshold"},
        weights_path, activation=activation, k=int(k) if k else None,
        apply_b_dec_to_input=bool(config.get("apply_b_dec_to_input", True)),
        hook=external_hook(hook_name, config_path),
        metadata={key: meta.get(key, config.get(key)) for key in ("model_name", "hf_hook_name") if
                  meta.get(key, config.get(key)) is not None})
    declared = (config.get("d_in"), config.get("d_sae"))
    if declared != (None, None) and declared != (sae.d_in, sae.d_sae):
        raise InterpError(f"{config_path}: declares d_in, d_sae = {declared} but the weights are "
                          f"({sae.d_in}, {sae.d_sae})")
    return sae


def load_gemma_scope_1(path: Path) -> SAE:
    tensors = read_npz(path)
    names = {name: name for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")}
    return canonical(tensors, names, path, activation="jumprelu", apply_b_dec_to_input=False)


def load_gemma_scope_2(folder: Path) -> SAE:
    config_path = folder / "config.json"
    config = read_json(config_path)
    if config.get("architecture", "jump_relu") != "jump_relu":
        raise InterpError(f"{config_path}: unsupported architecture '{config['architecture']}'; expected jump_relu")
    if config.get("type", "sae") == "transcoder" or "affine_connection" in config or "hf_hook_point_out" in config:
        return load_gemma_scope_2_transcoder(folder, config)
    if config.get("type", "sae") != "sae":
        raise InterpError(f"{config_path}: type '{config.get('type')}'; expected an SAE or a transcoder")
    weights_path = folder / "params.safetensors"
    names = {"W_enc": "w_enc", "b_enc": "b_enc", "W_dec": "w_dec", "b_dec": "b_dec", "threshold": "threshold"}
    sae = canonical(read_safetensors(weights_path), names, weights_path, activation="jumprelu",
                    apply_b_dec_to_input=False, hook=external_hook(config.get("hf_hook_point_in"), config_path),
                    metadata={k: config[k] for k in ("model_name", "l0") if k in config})
    if "width" in config and int(config["width"]) != sae.d_sae:
        raise InterpError(f"{config_path}: declares width {config['width']} but the weights have {sae.d_sae} latents")
    return sae


def load_sparsify(folder: Path) -> SAE:
    config_path = folder / "cfg.json"
    config = read_json(config_path)
    if config.get("transcode"):
        return load_sparsify_transcoder(folder, config)
    if config.get("skip_connection"):
        raise InterpError(f"{config_path}: a skip connection on an SAE that does not transcode; expected "
                          "transcode: true")
    if not config.get("k"):
        raise InterpError(f"{config_path}: no 'k'; sparsify SAEs are TopK")
    weights_path = folder / "sae.safetensors"
    names = {"W_enc": "encoder.weight", "b_enc": "encoder.bias", "W_dec": "W_dec", "b_dec": "b_dec"}
    # sparsify names the folder after the hookpoint (e.g. layers.6 = the output of layer 6).
    return canonical(read_safetensors(weights_path), names, weights_path, activation="topk", k=int(config["k"]),
                     apply_b_dec_to_input=True, hook=external_hook(folder.name, config_path))


def load_sae(path: Path | str, hook: str | None = None, layer: int | None = None) -> SAE:
    """Any supported SAE or transcoder from a folder or its weights file; `hook` overrides or supplies an SAE's
    hook; `layer` (or `hook`'s layer) picks one transcoder of a circuit-tracer set."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InterpError(f"SAE path '{path}' does not exist")
    folder = path if path.is_dir() else path.parent
    if (folder / CIRCUIT_TRACER_CONFIG).exists():
        named = LAYER_FILE.fullmatch(path.name)
        return load_circuit_tracer(folder, int(named.group(1)) if named else layer if layer is not None
                                   else layer_of(hook))
    if (folder / SAELENS_WEIGHTS).exists():
        sae = load_saelens(folder)
    elif (folder / "params.npz").exists():
        sae = load_gemma_scope_1(folder / "params.npz")
    elif (folder / "params.safetensors").exists():
        sae = load_gemma_scope_2(folder)
    elif (folder / "sae.safetensors").exists():
        sae = load_sparsify(folder)
    else:
        raise InterpError(f"'{path}' holds no SAE or transcoder this tool reads; expected sae_weights.safetensors "
                          "(SAELens), params.npz (Gemma Scope 1), params.safetensors (Gemma Scope 2), sae.safetensors "
                          "(sparsify) or config.yaml (a circuit-tracer transcoder set)")
    if hook is not None and not sae.is_transcoder:  # a transcoder keeps the points its file names
        sae.hook = hook
    return sae


def check_fits(sae: SAE, width: int, hook: str, source: Path | str, output: bool = False) -> None:
    """An SAE must read exactly the hook's width (a transcoder also write its output hook's); anything else is
    the wrong SAE for this model."""
    if output:
        if sae.d_out != width:
            raise InterpError(f"{source}: transcoder output width {sae.d_out} does not match hook {hook} of this "
                              f"model (width {width})")
        return
    if sae.d_in != width:
        raise InterpError(f"{source}: SAE input width {sae.d_in} does not match hook {hook} of this model "
                          f"(width {width})")
    if not math.isfinite(float(sae.W_enc.abs().max())):
        raise InterpError(f"{source}: SAE weights hold NaN or infinite values")
