"""A sparse autoencoder in one canonical form, whatever format it came from.

    W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in], threshold [d_sae] (JumpReLU)

encode(x) = act((x - b_dec * apply_b_dec_to_input) @ W_enc + b_enc), where act is
- relu:     max(pre, 0)
- topk:     the k largest of pre per token, kept where positive (relu of the top k), others 0
- jumprelu: pre where pre > threshold, else 0
decode(f) = f @ W_dec + b_dec.

A transcoder is the same encoder with a decoder into another point: it reads `hook` (the MLP's input,
`mlp_in.L`) and predicts `hook_out` (the MLP's output, `mlp_out.L`), optionally with an affine skip:
forward(x) = decode(encode(x)) + x @ W_skip, W_skip [d_in, d_out]. Its b_dec lives in the output space, so it
is never subtracted from the input.

Loaders (tools/sae_formats.py) reduce every format to this; the native save format is SAELens's
(`cfg.json` + `sae_weights.safetensors`), so other tools load what we train.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from tools.errors import InterpError
from tools.model.hooks import HookPoint

ACTIVATIONS = ("relu", "topk", "jumprelu")
SAELENS_ARCHITECTURES = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu"}
SAELENS_CONFIG = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
SAELENS_FORMAT_VERSION = "6.0.0"


@dataclass(frozen=True)
class SparseCodes:
    """The non-zero latents of `n_tokens` tokens: token `rows[i]` has latent `cols[i]` at `values[i]`,
    ordered by token."""

    rows: torch.Tensor  # [nnz] long
    cols: torch.Tensor  # [nnz] long
    values: torch.Tensor  # [nnz] float
    n_tokens: int
    width: int

    def dense(self) -> torch.Tensor:
        out = torch.zeros((self.n_tokens, self.width), dtype=self.values.dtype, device=self.values.device)
        out[self.rows, self.cols] = self.values
        return out


@dataclass
class SAE:
    W_enc: torch.Tensor  # [d_in, d_sae]
    b_enc: torch.Tensor  # [d_sae]
    W_dec: torch.Tensor  # [d_sae, d_in]
    b_dec: torch.Tensor  # [d_in]
    activation: str
    """relu | topk | jumprelu"""
    hook: str | None = None
    """Our hook name (tools.model.hooks), e.g. resid_post.6; None when the file did not say."""
    k: int | None = None
    """Active latents per token, for topk."""
    threshold: torch.Tensor | None = None  # [d_sae], for jumprelu
    apply_b_dec_to_input: bool = False
    metadata: dict = field(default_factory=dict)
    """What the source said that the maths does not need (model name, training settings)."""
    hook_out: str | None = None
    """A transcoder's output hook (e.g. mlp_out.6); None for an SAE, which reconstructs its input."""
    W_skip: torch.Tensor | None = None  # [d_in, d_out], a skip transcoder's affine skip

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown SAE activation '{self.activation}'; expected one of {ACTIVATIONS}")
        if self.activation == "topk" and not self.k:
            raise ValueError("a topk SAE needs k")
        if self.activation == "jumprelu" and self.threshold is None:
            raise ValueError("a jumprelu SAE needs a threshold")
        if self.W_skip is not None and self.hook_out is None:
            raise ValueError("only a transcoder (with an output hook) has a skip connection")
        if self.is_transcoder and self.apply_b_dec_to_input:
            raise ValueError("a transcoder's b_dec is in its output space; it cannot be subtracted from its input")

    @property
    def is_transcoder(self) -> bool:
        return self.hook_out is not None

    @property
    def d_out(self) -> int:
        return self.W_dec.shape[1]

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[1]

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> "SAE":
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "W_skip"):
            tensor = getattr(self, name)
            if tensor is not None:
                setattr(self, name, tensor.to(device=device, dtype=dtype))
        return self

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d_sae] before the activation (what AuxK ranks dead latents by)."""
        return self._pre(x)

    def _pre(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.W_enc.dtype)
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc  # [..., d_sae]

    def _activate(self, pre: torch.Tensor) -> torch.Tensor:
        if self.activation == "relu":
            return torch.relu(pre)
        assert self.threshold is not None  # relu and jumprelu only; topk is read off its top k
        return pre * (pre > self.threshold)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., d_in] -> latents [..., d_sae]."""
        pre = self._pre(x)
        if self.activation != "topk":
            return self._activate(pre)
        assert self.k is not None  # a topk SAE is built with its k
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, top.indices, torch.relu(top.values))

    @property
    def nonnegative(self) -> bool:
        """Whether every code is >= 0 (relu, topk, jumprelu with thresholds >= 0): then a latent absent from a
        token's non-zeros is exactly 0 there, below every value it takes, which the sparse cache pass uses."""
        if self.activation != "jumprelu":
            return True
        assert self.threshold is not None
        return bool(torch.all(self.threshold >= 0))

    def encode_sparse(self, x: torch.Tensor, chunk_elements: int = 1 << 26) -> SparseCodes:
        """x: [tokens, d_in] -> the non-zero codes, exactly the entries of `encode(x)` that are not 0. A TopK
        SAE's are read off its top k without scattering a dense [tokens, d_sae] tensor; the pre-activations
        are made `chunk_elements` at a time, so a 1M-latent SAE never holds a batch's dense codes."""
        rows, cols, values = [], [], []
        step = max(1, chunk_elements // self.d_sae)
        for start in range(0, x.shape[0], step):
            pre = self._pre(x[start:start + step])  # [chunk, d_sae]
            if self.activation == "topk":
                assert self.k is not None
                top = pre.topk(self.k, dim=-1)
                chunk_rows = torch.arange(start, start + pre.shape[0], device=x.device).repeat_interleave(self.k)
                chunk_cols, chunk_values = top.indices.reshape(-1), torch.relu(top.values).reshape(-1)
                kept = chunk_values != 0
                rows.append(chunk_rows[kept])
                cols.append(chunk_cols[kept])
                values.append(chunk_values[kept])
                continue
            codes = self._activate(pre)
            row, col = codes.nonzero(as_tuple=True)
            rows.append(row + start)
            cols.append(col)
            values.append(codes[row, col])
        return SparseCodes(torch.cat(rows), torch.cat(cols), torch.cat(values), x.shape[0], self.d_sae)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents: [..., d_sae] -> reconstruction [..., d_in]."""
        return latents @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of the input (SAE) or the prediction of the output (transcoder)."""
        out = self.decode(self.encode(x))
        if self.W_skip is not None:
            out = out + x.to(self.W_skip.dtype) @ self.W_skip
        return out

    def save_saelens(self, folder: Path | str, hf_hook_name: str | None = None,
                     hf_hook_name_out: str | None = None) -> Path:
        """Write SAELens v6's layout: `cfg.json` + `sae_weights.safetensors`; a transcoder as SAELens's
        Transcoder, SkipTranscoder, JumpReLUTranscoder or JumpReLUSkipTranscoder."""
        architecture = self.saelens_architecture()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}
        if self.threshold is not None:
            tensors["threshold"] = self.threshold
        if self.W_skip is not None:
            tensors["W_skip"] = self.W_skip.T  # SAELens keeps it [d_out, d_in] and applies x @ W_skip.T
        save_file({name: t.detach().float().contiguous().cpu() for name, t in tensors.items()},
                  folder / SAELENS_WEIGHTS)
        outputs = {"hook_name_out": tl_hook_name(self.hook_out), "hf_hook_name_out": hf_hook_name_out} \
            if self.is_transcoder else {}
        config = {
            "architecture": architecture,
            **({"d_out": self.d_out} if self.is_transcoder else {}),
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": self.apply_b_dec_to_input,
            "normalize_activations": "none",
            "reshape_activations": "none",
            # sae_lens_version marks the v6 layout: SAELens reads a config without it as pre-6 and drops metadata.
            "metadata": {**self.metadata, "hook_name": tl_hook_name(self.hook), "hf_hook_name": hf_hook_name,
                         **outputs, "sae_lens_version": SAELENS_FORMAT_VERSION, "sae_lens_training_version": None},
        }
        if self.k is not None:
            config["k"] = self.k
        (folder / SAELENS_CONFIG).write_text(json.dumps(config, indent=2))
        return folder


    def saelens_architecture(self) -> str:
        if not self.is_transcoder:
            return SAELENS_ARCHITECTURES[self.activation]
        if self.activation == "topk":
            raise InterpError("SAELens has no TopK transcoder class; save this transcoder in circuit-tracer's "
                              "layout instead")
        return ("jumprelu_" if self.activation == "jumprelu" else "") + \
            ("skip_transcoder" if self.W_skip is not None else "transcoder")


def tl_hook_name(hook: str | None) -> str | None:
    """Our hook name as TransformerLens spells it (what SAELens configs carry)."""
    if hook is None:
        return None
    site, layer = hook.split(".")
    return HookPoint(site, int(layer)).tl_name
