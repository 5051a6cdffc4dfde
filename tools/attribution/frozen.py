"""The local replacement model of an attribution graph: the subject with every MLP replaced by its transcoder
and everything non-linear frozen at its value on the prompt.

One recording pass over the prompt keeps three things:
- each attention pattern (the softmax weights of every head);
- each norm's scale per position (1/RMS, or 1/std for LayerNorm): input, post-attention, pre- and
  post-feedforward and final norms alike; q/k norms only shape the patterns, which are kept whole;
- each MLP's output less its transcoder's skip (`mlp_out - mlp_in @ W_skip`): what the transcoder's latents,
  its bias and its error account for.

On a frozen pass these are constants: attention mixes the values it now gets with the recorded pattern, a
norm multiplies by the recorded scale, and an MLP's output is the skip of the input it now gets plus the
recorded rest. What is left is linear in the residual stream, so the gradient of a node's input with respect
to another node's output is that edge's direct effect.

circuit-tracer freezes the same things by detaching them in one pass. Replaying recorded values gives the same
derivative, and the same frozen model can be run forward with an edit (`out_edits`, `embedding_edit`), which
is how the tests check each edge against an intervention.
"""

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import PretrainedConfig
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from tools.errors import InterpError
from tools.model.hooks import ATTENTION_PATHS, decoder_layers, spliced_mlps
from tools.sae.autoencoder import SAE

ATTENTION = "interp_frozen"
NORM_FORMS = ("rms_one_plus", "rms", "rms_plain", "layer")
"""x * s * (1 + w) (Gemma), x * s * w (Llama, Qwen, Mistral), x * s (no weight), (x - mean) * s * w + b
(LayerNorm: GPT-2, GPT-NeoX)."""


@dataclass
class Frozen:
    """What a recording pass kept, and the tensors of the latest frozen pass that attribution reads."""

    transcoders: dict[int, SAE]
    recording: bool = True
    patterns: dict[nn.Module, torch.Tensor] = field(default_factory=dict)
    norms: dict[nn.Module, tuple[str, torch.Tensor]] = field(default_factory=dict)
    rest: dict[int, torch.Tensor] = field(default_factory=dict)
    embedding: torch.Tensor | None = None
    """The recorded token embeddings [1, seq, d]."""
    embedding_leaf: torch.Tensor | None = None
    """The token embeddings of the latest frozen pass [batch, seq, d]: where gradients reach the tokens."""
    inputs: dict[int, torch.Tensor] = field(default_factory=dict)
    """mlp_in.L of the latest pass [batch, seq, d]."""
    outputs: dict[int, torch.Tensor] = field(default_factory=dict)
    """mlp_out.L of the latest pass [batch, seq, d]."""
    out_edits: dict[int, torch.Tensor] = field(default_factory=dict)
    """Added to mlp_out.L on a frozen pass: an intervention on a feature or error node."""
    embedding_edit: torch.Tensor | None = None

    def skip(self, layer: int, inputs: torch.Tensor) -> torch.Tensor | None:
        transcoder = self.transcoders[layer]
        return None if transcoder.W_skip is None else inputs.float() @ transcoder.W_skip


def reproduces(ours: torch.Tensor, theirs: torch.Tensor) -> bool:
    """Whether a reproduced output is the module's own: in fp32 to a few ulps of its sums, in half precision (bf16
    on a GPU) to its ~3 significant digits."""
    loose = theirs.dtype != torch.float32
    return torch.allclose(ours.float(), theirs.float(), rtol=3e-2 if loose else 1e-3, atol=3e-2 if loose else 1e-4)


def norm_scale(form: str, x: torch.Tensor, eps: float) -> torch.Tensor:
    if form == "layer":
        return torch.rsqrt(x.var(-1, keepdim=True, unbiased=False) + eps)
    return torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def apply_norm(module: nn.Module, form: str, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    if form == "layer":
        out = (x - x.mean(-1, keepdim=True)) * scale
        out = out * weight if weight is not None else out
        return out + bias if bias is not None else out
    if form == "rms_one_plus":
        return x * scale * (1.0 + weight.float())  # type: ignore[union-attr]
    if form == "rms":
        return x * scale * weight.float()  # type: ignore[union-attr]
    return x * scale


def fit_norm(module: nn.Module, x: torch.Tensor, output: torch.Tensor) -> tuple[str, torch.Tensor]:
    """Which form this norm computes, read off what it just did: the form whose output matches the module's."""
    eps = getattr(module, "eps", None) or getattr(module, "variance_epsilon", None) or 1e-6
    has_weight = getattr(module, "weight", None) is not None
    forms = ("layer",) if isinstance(module, nn.LayerNorm) else \
        ("rms_one_plus", "rms") if has_weight else ("rms_plain",)
    x = x.float()
    for form in forms:
        scale = norm_scale(form, x, float(eps))
        if reproduces(apply_norm(module, form, x, scale), output):
            return form, scale.detach()
    raise InterpError(f"cannot freeze norm {type(module).__name__}: it computes none of {', '.join(forms)}; "
                      "attribution knows RMSNorm and LayerNorm")


def norm_modules(model: nn.Module) -> list[nn.Module]:
    """Every norm on the residual path (q/k norms inside attention are left out: they only shape patterns)."""
    found = []
    for name, module in model.named_modules():
        kind = type(module).__name__
        if not (isinstance(module, nn.LayerNorm) or kind.endswith("RMSNorm") or kind.endswith("LayerNorm")):
            continue
        if any(f".{path}." in f".{name}." for path in ATTENTION_PATHS):
            continue
        found.append(module)
    return found


def eager_attention(module: nn.Module):
    """The attention module's own eager implementation (it returns the pattern)."""
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if eager is None:
        raise InterpError(f"attention {type(module).__name__} has no eager implementation to record patterns with")
    return eager


def pattern_mix(module: nn.Module, pattern: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """[batch, seq, heads, head_dim]: the values mixed by a fixed pattern [1, heads, seq, seq]."""
    groups = getattr(module, "num_key_value_groups", 1)
    value = value.repeat_interleave(groups, dim=1) if groups > 1 else value
    return torch.matmul(pattern.to(value.dtype), value).transpose(1, 2).contiguous()


_ACTIVE: list[Frozen] = []


def frozen_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
    state = _ACTIVE[-1]
    if state.recording:
        out, pattern = eager_attention(module)(module, query, key, value, attention_mask, **kwargs)
        pattern = pattern.detach()
        if not reproduces(pattern_mix(module, pattern, value), out):
            raise InterpError(f"attention {type(module).__name__} is not a pattern times values; cannot freeze it")
        state.patterns[module] = pattern
        return out, pattern
    return pattern_mix(module, state.patterns[module], value), None


ALL_ATTENTION_FUNCTIONS.register(ATTENTION, frozen_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, eager_mask)


@contextmanager
def attention_implementation(model: nn.Module, name: str) -> Iterator[None]:
    configs = {id(c): c for m in model.modules() if isinstance(c := getattr(m, "config", None), PretrainedConfig)}
    before = {key: config._attn_implementation for key, config in configs.items()}
    try:
        for config in configs.values():
            config._attn_implementation = name
        yield
    finally:
        for key, config in configs.items():
            config._attn_implementation = before[key]


@contextmanager
def frozen_model(model: nn.Module, transcoders: dict[int, SAE]) -> Iterator[Frozen]:
    """While open, the model records on its first forward (`state.recording`) and replays after it is
    set False. Parameters do not require grad meanwhile; everything is restored on exit."""
    layers = len(decoder_layers(model))
    missing = sorted(set(range(layers)) - set(transcoders))
    if missing:
        raise InterpError(f"an attribution graph needs a transcoder for every layer; layers {missing} have none")
    state = Frozen(transcoders)

    def norm_hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        x = args[0].float()
        if state.recording:
            state.norms[module] = fit_norm(module, x, output)
        form, scale = state.norms[module]
        return apply_norm(module, form, x, scale).to(output.dtype)

    def embedding_hook(_module: nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor:
        if state.recording:
            state.embedding = output.detach()  # in the model's dtype: what the layers above take
            return output
        assert state.embedding is not None
        leaf = state.embedding.expand(output.shape[0], -1, -1).clone().requires_grad_(True)
        state.embedding_leaf = leaf
        return leaf if state.embedding_edit is None else leaf + state.embedding_edit

    def splice(layer: int):
        def replace(inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
            skip = state.skip(layer, inputs)
            if state.recording:
                state.rest[layer] = (outputs.float() - (0 if skip is None else skip)).detach()
                result = outputs.float()
            else:
                result = state.rest[layer].expand(inputs.shape[0], -1, -1)
                result = result + skip if skip is not None else result.clone().requires_grad_(True)
                if layer in state.out_edits:
                    result = result + state.out_edits[layer]
            state.inputs[layer], state.outputs[layer] = inputs, result
            return result.to(outputs.dtype)
        return replace

    grads = {param: param.requires_grad for param in model.parameters()}
    _ACTIVE.append(state)
    try:
        with ExitStack() as stack:
            for param in grads:
                param.requires_grad_(False)
            stack.enter_context(attention_implementation(model, ATTENTION))
            embeddings: nn.Module = model.get_input_embeddings()  # type: ignore[operator]
            for module in norm_modules(model):
                stack.callback(module.register_forward_hook(norm_hook).remove)
            stack.callback(embeddings.register_forward_hook(embedding_hook).remove)
            stack.enter_context(spliced_mlps(model, {layer: splice(layer) for layer in range(layers)}))
            yield state
    finally:
        _ACTIVE.pop()
        for param, required in grads.items():
            param.requires_grad_(required)
