"""Transcoder formats, read into the canonical `SAE` with an output hook (tools/sae/autoencoder.py), and
circuit-tracer's layout written.

A transcoder reads the MLP block's input (`mlp_in.L`) and predicts its output (`mlp_out.L`). Each format's
matrices are read in the orientation its own code documents (a transcoder's skip matrix is square, so its
orientation cannot be told from its shape):

- Gemma Scope 2: `config.json` + `params.safetensors`; `w_enc` [d_in, d_tc], `w_dec` [d_tc, d_out], skip
  `affine_skip_connection` [d_in, d_out].
- circuit-tracer: `config.yaml` (model_kind: transcoder_set) + `layer_{i}.safetensors`; `W_enc` [d_tc, d_in],
  `W_dec` [d_tc, d_out], `W_skip` [d_out, d_in] applied as x @ W_skip.T.
- SAELens: `cfg.json` (architecture *transcoder) + `sae_weights.safetensors`; `W_enc` [d_in, d_tc], `W_dec`
  [d_tc, d_out], `W_skip` [d_out, d_in] applied as x @ W_skip.T.
- sparsify: `cfg.json` (transcode: true) + `sae.safetensors`; `encoder.weight` [d_tc, d_in], `W_dec`
  [d_tc, d_out], `W_skip` [d_out, d_in] applied as x @ W_skip.mT.

JumpReLU thresholds are `threshold` (circuit-tracer: `activation_function.threshold`); circuit-tracer's TopK
sets carry `k` in the config or as a tensor; sparsify's are TopK. A cross-layer transcoder is refused.
"""

import re
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from tools.errors import InterpError
from tools.model.hooks import HookPoint, hook_from_external_name
from tools.sae.autoencoder import SAE
from tools.sae.files import external_hook, read_safetensors, required

SAELENS_TRANSCODERS = {"transcoder": "relu", "skip_transcoder": "relu", "jumprelu_transcoder": "jumprelu",
                       "jumprelu_skip_transcoder": "jumprelu"}
CIRCUIT_TRACER_CONFIG = "config.yaml"
CIRCUIT_TRACER_HOOKS = {"mlp.hook_in": "mlp_in", "ln2.hook_normalized": "mlp_in", "hook_mlp_out": "mlp_out",
                        "mlp.hook_out": "mlp_out"}
"""circuit-tracer's names for the points a transcoder reads and writes (TransformerLens hook names within a
block, as its nnsight mappings spell them); on Gemma 3 `mlp.hook_in` is the output of pre_feedforward_layernorm
and `hook_mlp_out` of post_feedforward_layernorm, as for Gemma Scope 2."""
CIRCUIT_TRACER_WRITES = ("mlp.hook_in", "hook_mlp_out")
LAYER_FILE = re.compile(r"layer_(\d+)\.safetensors")


def build(tensors: dict[str, torch.Tensor], source: Path, W_enc: torch.Tensor, W_skip: torch.Tensor | None,
          activation: str, hook: str | None, hook_out: str | None, k: int | None = None,
          threshold_name: str = "threshold", metadata: dict | None = None) -> SAE:
    """A transcoder from a format's tensors, `W_enc` already [d_in, d_tc] and `W_skip` [d_in, d_out]; the
    shapes are checked against the biases."""
    b_enc, b_dec = required(tensors, "b_enc", source), required(tensors, "b_dec", source)
    W_dec = required(tensors, "W_dec", source)
    d_tc, d_out = b_enc.numel(), b_dec.numel()
    d_in = W_enc.shape[0]
    expected = {"W_enc": (W_enc, (d_in, d_tc)), "W_dec": (W_dec, (d_tc, d_out))}
    if W_skip is not None:
        expected["W_skip"] = (W_skip, (d_in, d_out))
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise InterpError(f"{source}: '{name}' has shape {tuple(tensor.shape)}; expected {shape} from the "
                              f"biases (d_transcoder {d_tc}, d_out {d_out})")
    threshold = None
    if activation == "jumprelu":
        threshold = required(tensors, threshold_name, source).reshape(-1)
        if threshold.numel() != d_tc:
            raise InterpError(f"{source}: threshold has {threshold.numel()} entries; expected {d_tc}")
    if hook is None or hook_out is None:
        raise InterpError(f"{source}: the transcoder does not say which points it reads and writes; expected an "
                          "MLP input and output hook")
    try:
        return SAE(W_enc.float(), b_enc.reshape(d_tc), W_dec.float(), b_dec.reshape(d_out), activation, hook=hook,
                   k=k, threshold=threshold, hook_out=hook_out,
                   W_skip=None if W_skip is None else W_skip.float(), metadata=metadata or {})
    except ValueError as error:
        raise InterpError(f"{source}: {error}") from None


def output_of(hook: str | None) -> str | None:
    """mlp_in.L -> mlp_out.L: the output a transcoder reading `hook` predicts, where its file does not say."""
    if hook is None or not hook.startswith("mlp_in."):
        return None
    return f"mlp_out.{hook.split('.')[1]}"


def load_saelens_transcoder(folder: Path, config: dict, tensors: dict[str, torch.Tensor]) -> SAE:
    config_path = folder / "cfg.json"
    meta = config.get("metadata") or {}
    hook = external_hook(meta.get("hook_name") or config.get("hook_name"), config_path)
    hook_out = external_hook(meta.get("hook_name_out"), config_path) or output_of(hook)
    W_skip = required(tensors, "W_skip", folder).T if "skip" in config["architecture"] else None
    return build(tensors, folder, required(tensors, "W_enc", folder), W_skip,
                 SAELENS_TRANSCODERS[config["architecture"]], hook, hook_out,
                 metadata={key: meta[key] for key in ("model_name",) if key in meta})


def load_gemma_scope_2_transcoder(folder: Path, config: dict) -> SAE:
    config_path = folder / "config.json"
    weights = folder / "params.safetensors"
    tensors = read_safetensors(weights)
    renamed = {"b_enc": required(tensors, "b_enc", weights), "b_dec": required(tensors, "b_dec", weights),
               "W_dec": required(tensors, "w_dec", weights), "threshold": required(tensors, "threshold", weights)}
    skip = tensors.get("affine_skip_connection")
    if bool(config.get("affine_connection")) != (skip is not None):
        raise InterpError(f"{config_path}: affine_connection is {config.get('affine_connection')} but "
                          f"{weights.name} {'has' if skip is not None else 'lacks'} 'affine_skip_connection'")
    hook = external_hook(config.get("hf_hook_point_in"), config_path)
    hook_out = external_hook(config.get("hf_hook_point_out"), config_path) or output_of(hook)
    return build(renamed, weights, required(tensors, "w_enc", weights), None if skip is None else skip.float(),
                 "jumprelu", hook, hook_out, metadata={k: config[k] for k in ("model_name", "l0") if k in config})


def load_sparsify_transcoder(folder: Path, config: dict) -> SAE:
    config_path = folder / "cfg.json"
    if not config.get("k"):
        raise InterpError(f"{config_path}: no 'k'; sparsify transcoders are TopK")
    weights = folder / "sae.safetensors"
    tensors = read_safetensors(weights)
    # sparsify names the folder after the module it transcodes (`layers.6.mlp`): its input and its output.
    match = re.fullmatch(r"(?:model\.)?(?:layers|h)\.(\d+)\.mlp", folder.name)
    if match is None:
        raise InterpError(f"{config_path}: a sparsify transcoder's folder names the MLP it replaces, like "
                          f"layers.6.mlp; got '{folder.name}'")
    layer = match.group(1)
    W_skip = required(tensors, "W_skip", weights).T if config.get("skip_connection") else None
    renamed = {"b_enc": required(tensors, "encoder.bias", weights), "b_dec": required(tensors, "b_dec", weights),
               "W_dec": required(tensors, "W_dec", weights)}
    return build(renamed, weights, required(tensors, "encoder.weight", weights).T, W_skip, "topk",
                 f"mlp_in.{layer}", f"mlp_out.{layer}", k=int(config["k"]))


def circuit_tracer_hook(name: object, layer: int, config_path: Path) -> str:
    site = CIRCUIT_TRACER_HOOKS.get(str(name))
    if site is None:
        raise InterpError(f"{config_path}: transcoders at '{name}' are not ones interp can hook; expected one of "
                          f"{', '.join(CIRCUIT_TRACER_HOOKS)}")
    return HookPoint(site, layer).name


def circuit_tracer_layers(folder: Path, config: dict) -> dict[int, Path]:
    """Each layer's file: the config's `transcoders` list (paths relative to the folder), else the
    `layer_{i}.safetensors` files circuit-tracer's cache holds."""
    listed = config.get("transcoders")
    if isinstance(listed, list) and listed:
        return {layer: folder / str(path) for layer, path in enumerate(listed)}
    return layer_files(folder)


def layer_files(folder: Path) -> dict[int, Path]:
    """The `layer_{L}.safetensors` files of a folder, by layer."""
    return {int(match.group(1)): path for path in sorted(folder.glob("layer_*.safetensors"))
            if (match := LAYER_FILE.fullmatch(path.name))}


def load_transcoder_set(folder: Path | str) -> dict[int, SAE]:
    """Every layer's transcoder of a set in circuit-tracer's layout, by layer in order: the layers its config
    lists, else its `layer_{L}.safetensors` files, as for one layer."""
    folder = Path(folder)
    if not (folder / CIRCUIT_TRACER_CONFIG).is_file():
        raise InterpError(f"'{folder}' has no {CIRCUIT_TRACER_CONFIG}; expected a transcoder set in circuit-tracer's "
                          "layout (`interp transcoder train` writes one)")
    config = circuit_tracer_config(folder)
    layers = circuit_tracer_layers(folder, config)
    if not layers:
        raise InterpError(f"'{folder}' holds no layer_L.safetensors files; expected a transcoder set "
                          "(`interp transcoder train` writes one)")
    return {layer: circuit_tracer_layer(folder, config, layers, layer) for layer in sorted(layers)}


def circuit_tracer_config(folder: Path) -> dict:
    """A transcoder set's `config.yaml`, checked: a per-layer set (a cross-layer transcoder is refused)."""
    config_path = folder / CIRCUIT_TRACER_CONFIG
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise InterpError(f"{config_path}: unreadable ({str(error).splitlines()[0][:120]})") from None
    if not isinstance(config, dict):
        raise InterpError(f"{config_path}: expected a YAML mapping")
    kind = config.get("model_kind")
    if kind == "cross_layer_transcoder":
        raise InterpError(f"{config_path}: a cross-layer transcoder; interp reads per-layer transcoder sets only")
    if kind != "transcoder_set":
        raise InterpError(f"{config_path}: model_kind '{kind}'; expected transcoder_set")
    return config


def load_circuit_tracer(folder: Path, layer: int | None) -> SAE:
    config = circuit_tracer_config(folder)
    layers = circuit_tracer_layers(folder, config)
    if layer is None:
        raise InterpError(f"{folder} holds transcoders for {len(layers)} layers; name one with --hook mlp_in.L or "
                          "pass its layer_L.safetensors")
    return circuit_tracer_layer(folder, config, layers, layer)


def circuit_tracer_layer(folder: Path, config: dict, layers: dict[int, Path], layer: int) -> SAE:
    config_path = folder / CIRCUIT_TRACER_CONFIG
    if layer not in layers:
        raise InterpError(f"{folder} has no transcoder for layer {layer} (layers {sorted(layers)})")
    weights = layers[layer]
    tensors = read_safetensors(weights)
    activation = str(config.get("activation") or ("jumprelu" if "activation_function.threshold" in tensors
                                                  else "topk" if "k" in tensors else "relu"))
    if activation not in ("relu", "topk", "jumprelu"):
        raise InterpError(f"{config_path}: activation '{activation}'; expected relu, topk or jumprelu")
    k = config.get("k") or (int(tensors["k"]) if "k" in tensors else None)
    W_skip = tensors["W_skip"].T if "W_skip" in tensors else None
    return build(tensors, weights, required(tensors, "W_enc", weights).T, W_skip, activation,
                 circuit_tracer_hook(config.get("feature_input_hook"), layer, config_path),
                 circuit_tracer_hook(config.get("feature_output_hook"), layer, config_path),
                 k=int(k) if activation == "topk" and k else None, threshold_name="activation_function.threshold")


def save_circuit_tracer(transcoders: list[SAE], folder: Path | str, scan: str = "") -> Path:
    """Write per-layer transcoders in circuit-tracer's layout: `config.yaml` (model_kind transcoder_set, its hook
    names, the activation) and `layer_{L}.safetensors` as its `SingleLayerTranscoder.to_safetensors` writes
    them. circuit-tracer loads a set that covers every layer from 0; our loaders also read a subset."""
    folder = Path(folder)
    layers = []
    for transcoder in transcoders:
        point = hook_from_external_name(transcoder.hook or "")
        if point is None or point.site != "mlp_in" or transcoder.hook_out != f"mlp_out.{point.layer}":
            raise InterpError(f"a transcoder of a set reads mlp_in.L and writes mlp_out.L; this one reads "
                              f"{transcoder.hook} and writes {transcoder.hook_out}")
        layers.append(point.layer)
    activations = {transcoder.activation for transcoder in transcoders}
    if len(activations) != 1:
        raise InterpError(f"a circuit-tracer set has one activation; these transcoders have {sorted(activations)}")
    folder.mkdir(parents=True, exist_ok=True)
    for layer, transcoder in zip(layers, transcoders, strict=True):
        tensors = {"W_enc": transcoder.W_enc.T, "W_dec": transcoder.W_dec, "b_enc": transcoder.b_enc,
                   "b_dec": transcoder.b_dec}
        if transcoder.threshold is not None:
            tensors["activation_function.threshold"] = transcoder.threshold
        if transcoder.k is not None:
            tensors["k"] = torch.tensor(transcoder.k)
        if transcoder.W_skip is not None:
            tensors["W_skip"] = transcoder.W_skip.T  # circuit-tracer applies x @ W_skip.T
        save_file({name: t.detach().float().contiguous().cpu() if t.is_floating_point() else t.contiguous().cpu()
                   for name, t in tensors.items()}, folder / f"layer_{layer}.safetensors")
    config: dict[str, object] = {"model_kind": "transcoder_set", "feature_input_hook": CIRCUIT_TRACER_WRITES[0],
                                 "feature_output_hook": CIRCUIT_TRACER_WRITES[1], "activation": activations.pop()}
    if sorted(layers) == list(range(len(layers))):  # circuit-tracer's own list: index = layer
        config["transcoders"] = [f"layer_{layer}.safetensors" for layer in range(len(layers))]
    if transcoders[0].k is not None:
        config["k"] = transcoders[0].k
    if scan:
        config["scan"] = scan
    (folder / CIRCUIT_TRACER_CONFIG).write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return folder


def layer_of(hook: str | None) -> int | None:
    """The layer of an MLP hook (`mlp_in.6` -> 6), for choosing one transcoder of a set."""
    point = hook_from_external_name(hook) if hook else None
    return point.layer if point is not None else None
