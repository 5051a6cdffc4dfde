"""Named hook points that mean the same thing on every supported architecture.

Our names are `SITE.LAYER`:

| name          | what it reads                                         | width   | TransformerLens name        |
|---------------|-------------------------------------------------------|---------|-----------------------------|
| resid_pre.L   | the residual stream entering layer L                  | d_model | blocks.L.hook_resid_pre     |
| resid_post.L  | the residual stream leaving layer L                   | d_model | blocks.L.hook_resid_post    |
| mlp.L         | MLP neuron activations: the input of the down projection | d_mlp | blocks.L.mlp.hook_post      |
| attn.L        | the attention block's output (after its out projection) | d_model | blocks.L.hook_attn_out    |
| mlp_in.L      | the MLP block's input (after the norm before it)       | d_model | blocks.L.ln2.hook_normalized |
| mlp_out.L     | the MLP block's output, as added to the residual stream | d_model | blocks.L.hook_mlp_out     |

`mlp_in` and `mlp_out` are what a transcoder reads and predicts. On Gemma 2/3 they are the outputs of
`pre_feedforward_layernorm` and `post_feedforward_layernorm`, the points Gemma Scope 2's transcoders name
(`hf_hook_point_in` / `hf_hook_point_out`) and circuit-tracer calls `mlp.hook_in` and `hook_mlp_out`; on
architectures with no norm after the MLP, `mlp_out` is the MLP module's output.

TransformerLens names are accepted as input too. Capture uses forward hooks on the decoder layers,
never `hidden_states[-1]`, which some models return after the final norm.
"""

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle
from transformers.pytorch_utils import Conv1D

from tools.errors import InterpError

SITES = ("resid_pre", "resid_post", "mlp", "attn", "mlp_in", "mlp_out")
TL_NAMES = {
    "resid_pre": "blocks.{layer}.hook_resid_pre",
    "resid_post": "blocks.{layer}.hook_resid_post",
    "mlp": "blocks.{layer}.mlp.hook_post",
    "attn": "blocks.{layer}.hook_attn_out",
    "mlp_in": "blocks.{layer}.ln2.hook_normalized",
    "mlp_out": "blocks.{layer}.hook_mlp_out",
}
TL_ALIASES = {
    # SAELens labels Gemma Scope 2's transcoders `hook_mlp_in` (they read the normalized input), and
    # circuit-tracer's replacement MLP records its input as `mlp.hook_in`.
    "blocks.{layer}.hook_mlp_in": "mlp_in",
    "blocks.{layer}.mlp.hook_in": "mlp_in",
}
# Attribute paths, tried in order: Llama/Gemma/Qwen/Mistral, GPT-2, GPT-NeoX/Pythia.
LAYER_PATHS = ("model.layers", "transformer.h", "gpt_neox.layers", "layers", "h")
DOWN_PROJ_PATHS = ("mlp.down_proj", "mlp.c_proj", "mlp.dense_4h_to_h")
MLP_PATHS = ("mlp",)
POST_MLP_NORM_PATHS = ("post_feedforward_layernorm",)
"""Gemma 2/3 normalize the MLP's output before adding it to the residual stream; the others add it as is."""
INPUT_SITES = ("resid_pre", "mlp", "mlp_in")
"""Sites read from a module's input (the rest from its output)."""
ATTENTION_PATHS = ("self_attn", "attn", "attention")


@dataclass(frozen=True)
class HookPoint:
    site: str
    layer: int

    @property
    def name(self) -> str:
        return f"{self.site}.{self.layer}"

    @property
    def tl_name(self) -> str:
        return TL_NAMES[self.site].format(layer=self.layer)


def valid_hook_names(n_layers: int) -> str:
    return ", ".join(f"{site}.0..{n_layers - 1}" for site in SITES)


def parse_hook(name: str, n_layers: int) -> HookPoint:
    """Our name or a TransformerLens name to a HookPoint, with an error listing what is valid."""
    site, layer = None, None
    if match := re.fullmatch(r"(resid_pre|resid_post|mlp_in|mlp_out|mlp|attn)\.(\d+)", name):
        site, layer = match.group(1), int(match.group(2))
    else:
        for pattern, candidate in [(pattern, site) for site, pattern in TL_NAMES.items()] + list(TL_ALIASES.items()):
            regex = re.escape(pattern).replace(re.escape("{layer}"), r"(\d+)")
            if match := re.fullmatch(regex, name):
                site, layer = candidate, int(match.group(1))
    if site is None or layer is None or layer >= n_layers:
        raise InterpError(f"unknown hook '{name}'; valid: {valid_hook_names(n_layers)}")
    return HookPoint(site, layer)


# Module-path spellings other tools use: Gemma Scope 2 (`model.layers.6.output`), sparsify (`layers.6`),
# HF module paths. An optional `model.` / `transformer.` / `language_model.` prefix covers GPT-2 and
# multimodal models.
_PREFIX = r"(?:model\.|transformer\.)?(?:language_model\.)?(?:layers|h)\.(\d+)"
EXTERNAL_NAMES = (
    (_PREFIX + r"(?:\.output)?", "resid_post"),
    (_PREFIX + r"\.input", "resid_pre"),
    (_PREFIX + r"\.mlp\.(?:down_proj|c_proj)\.input", "mlp"),
    (_PREFIX + r"\.(?:self_attn|attn)(?:\.o_proj)?(?:\.output)?", "attn"),
    (_PREFIX + r"\.(?:pre_feedforward_layernorm\.output|mlp\.input)", "mlp_in"),
    (_PREFIX + r"\.(?:post_feedforward_layernorm|mlp)\.output", "mlp_out"),
)


def hook_from_external_name(name: str) -> HookPoint | None:
    """Our hook for a name written by another tool (ours, TransformerLens, HF module paths), or None."""
    try:
        return parse_hook(name, n_layers=10**6)
    except InterpError:
        pass
    for pattern, site in EXTERNAL_NAMES:
        if match := re.fullmatch(pattern, name):
            return HookPoint(site, int(match.group(1)))
    return None


def _get_path(root: nn.Module, path: str) -> nn.Module | None:
    module: nn.Module | None = root
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    for path in LAYER_PATHS:
        layers = _get_path(model, path)
        if isinstance(layers, nn.ModuleList):
            return layers
    raise InterpError(
        f"unsupported architecture {type(model).__name__}: no decoder layer list at {', '.join(LAYER_PATHS)}"
    )


def _find_submodule(layer: nn.Module, paths: tuple[str, ...], what: str) -> nn.Module:
    for path in paths:
        module = _get_path(layer, path)
        if module is not None:
            return module
    raise InterpError(f"unsupported architecture: no {what} module at {', '.join(paths)} in {type(layer).__name__}")


def hooked_module(model: nn.Module, hook: HookPoint) -> nn.Module:
    layer = decoder_layers(model)[hook.layer]
    if hook.site == "mlp":
        return _find_submodule(layer, DOWN_PROJ_PATHS, "MLP down-projection")
    if hook.site == "attn":
        return _find_submodule(layer, ATTENTION_PATHS, "attention")
    if hook.site == "mlp_in":
        return _find_submodule(layer, MLP_PATHS, "MLP")
    if hook.site == "mlp_out":
        norm = next((module for path in POST_MLP_NORM_PATHS if (module := _get_path(layer, path)) is not None), None)
        return norm if norm is not None else _find_submodule(layer, MLP_PATHS, "MLP")
    return layer


def hf_module_path(model: nn.Module, hook: HookPoint) -> str:
    """The HF module whose input (resid_pre, mlp, mlp_in) or output (resid_post, attn, mlp_out) the hook reads."""
    target = hooked_module(model, hook)
    for name, module in model.named_modules():
        if module is target:
            return name
    raise AssertionError("hooked module is not part of the model")


def hook_width(model: nn.Module, hook: HookPoint) -> int:
    if hook.site != "mlp":
        config: Any = model.config
        return int(config.hidden_size)
    down = hooked_module(model, hook)
    if isinstance(down, nn.Linear):
        return down.in_features
    if isinstance(down, Conv1D):
        return int(down.weight.shape[0])
    raise InterpError(f"unsupported MLP down-projection type {type(down).__name__}")


def n_layers(model: nn.Module) -> int:
    return len(decoder_layers(model))


class _StopForward(Exception):
    """Raised once every requested hook has fired, so the layers above (and the unembedding) never run."""


def _attach(model: nn.Module, hook: HookPoint, replace: Callable[[torch.Tensor], torch.Tensor]) -> RemovableHandle:
    """Route the activation at `hook` [batch, seq, width] through `replace`; the one place that knows
    which hooks read a module's input (INPUT_SITES) and which its output."""
    module = hooked_module(model, hook)
    if hook.site in INPUT_SITES:

        def pre_hook(_module, args, kwargs):
            if args:
                return (replace(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": replace(kwargs["hidden_states"])}

        return module.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def post_hook(_module, _args, output):
        if isinstance(output, tuple):
            return (replace(output[0]), *output[1:])
        return replace(output)

    return module.register_forward_hook(post_hook)


@contextmanager
def recorded(model: nn.Module, hooks: list[HookPoint], into: dict[str, torch.Tensor],
             stop_after_last: bool = False) -> Iterator[None]:
    """While open, every forward records the activations at `hooks` into `into` (by name); with
    `stop_after_last` it stops once all have fired (run_to_hooks), else it runs to the end (for the logits)."""
    def keep(hook: HookPoint, act: torch.Tensor) -> torch.Tensor:
        into[hook.name] = act
        if stop_after_last and len(into) == len(hooks):
            raise _StopForward
        return act

    handles = [_attach(model, hook, partial(keep, hook)) for hook in hooks]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.inference_mode()
def run_to_hooks(model: nn.Module, input_ids: torch.Tensor, hooks: list[HookPoint]) -> dict[str, torch.Tensor]:
    """Activations at `hooks` for `input_ids` [batch, seq], each [batch, seq, width].

    The forward pass stops as soon as the last requested hook fires: caching layer 6 of 18 costs
    a third of a full forward, and the 262k-token unembedding of Gemma never runs.
    """
    captured: dict[str, torch.Tensor] = {}
    with recorded(model, hooks, captured, stop_after_last=True):
        try:
            model(input_ids=input_ids, use_cache=False)
        except _StopForward:
            pass
    missing = [hook.name for hook in hooks if hook.name not in captured]
    if missing:
        raise AssertionError(f"hooks never fired: {missing}")
    return captured


@contextmanager
def replaced(model: nn.Module, hook: HookPoint, replace: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """While open, the activation at `hook` is `replace(activation)` [batch, seq, width] in every forward.

    The basis of SAE splicing, ablation, steering and patching: the rest of the model runs on the
    replaced value.
    """
    handle = _attach(model, hook, replace)
    try:
        yield
    finally:
        handle.remove()


MlpSplice = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(the MLP's input, its output) [batch, seq, d_model] -> the output the rest of the model sees."""


@contextmanager
def spliced_mlps(model: nn.Module, splices: dict[int, MlpSplice]) -> Iterator[None]:
    """While open, layer L's MLP output (`mlp_out.L`) is `splices[L](mlp_in.L, mlp_out.L)` of the same forward:
    a transcoder in place of the MLP, a zeroed MLP, or a latent edited in the transcoder's output. The input is
    the one the spliced model itself computes, so splices of earlier layers reach later ones."""
    inputs: dict[int, torch.Tensor] = {}
    handles = []

    def remember(layer: int, act: torch.Tensor) -> torch.Tensor:
        inputs[layer] = act
        return act

    def replace(layer: int, act: torch.Tensor) -> torch.Tensor:
        return splices[layer](inputs.pop(layer), act)

    try:
        for layer in splices:
            handles.append(_attach(model, HookPoint("mlp_in", layer), partial(remember, layer)))
            handles.append(_attach(model, HookPoint("mlp_out", layer), partial(replace, layer)))
        yield
    finally:
        for handle in handles:
            handle.remove()
