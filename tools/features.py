"""What a feature set's features are: a hook's own dimensions (MLP neurons, residual or attention
dimensions) or the latents of an SAE read at that hook."""

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from tools.configs import DEFAULT_HOOK
from tools.errors import InterpError
from tools.feature_sources import registered_source
from tools.model.hooks import HookPoint, hook_width, n_layers, parse_hook
from tools.model.subject import SubjectModel, sha256_folder_weights
from tools.sae.autoencoder import SAE, SparseCodes
from tools.sae.formats import check_fits, load_sae
from tools.sae.transcoders import layer_of

FEATURE_KINDS = {"mlp": "neuron", "resid_pre": "residual", "resid_post": "residual", "attn": "attention",
                 "mlp_in": "residual", "mlp_out": "residual"}


@dataclass
class FeatureSource:
    """What a feature set's features are: a hook's own dimensions, or an SAE's latents read at that hook."""

    hook: HookPoint
    kind: str
    """neuron | residual | attention | sae | transcoder"""
    width: int
    sae: SAE | None = None
    path: str | None = None
    sha256: str | None = None

    def features(self, acts: torch.Tensor) -> torch.Tensor:
        """[B, seq, hook width] -> [B, seq, features]."""
        return self.sae.encode(acts.float()) if self.sae is not None else acts

    def read(self, subject: SubjectModel, input_ids: torch.Tensor) -> torch.Tensor:
        """The features on token ids: [B, seq] -> [B, seq, features]."""
        from tools.model.hooks import run_to_hooks

        return self.features(run_to_hooks(subject.model, input_ids, [self.hook])[self.hook.name])

    @property
    def sparse(self) -> bool:
        """Whether the cache pass folds these features from their non-zero codes (SAE latents >= 0)."""
        return self.sae is not None and self.sae.nonnegative

    def read_sparse(self, subject: SubjectModel, input_ids: torch.Tensor) -> SparseCodes:
        """The non-zero latents on token ids [B, seq], tokens numbered row-major (b * seq + position)."""
        from tools.model.hooks import run_to_hooks

        assert self.sae is not None
        acts = run_to_hooks(subject.model, input_ids, [self.hook])[self.hook.name]  # [B, seq, d_in]
        return self.sae.encode_sparse(acts.reshape(-1, acts.shape[-1]).float())

    @property
    def hook_name(self) -> str:
        return self.hook.name

    @property
    def name(self) -> str:
        """What a feature set is named after: its hook, and -sae for an SAE's latents."""
        if self.sae is None:
            return self.hook.name
        return f"{self.hook.name}-{'transcoder' if self.sae.is_transcoder else 'sae'}"

    def hf_module(self, model) -> str:
        from tools.model.hooks import hf_module_path

        return hf_module_path(model, self.hook)

    not_in_model: ClassVar[str] = ""
    """Why the features cannot be ablated, steered, patched or traced to the logits; empty when they are part
    of the model."""


def resolve_features(hook_name: str, sae_path: str, subject: SubjectModel) -> FeatureSource:
    """The hook's own dimensions, or the latents of the SAE at `sae_path` (whose file may name the hook)."""
    registered = registered_source(hook_name)
    if registered is not None:
        return registered(subject)
    layers = n_layers(subject.model)
    if not sae_path:
        hook = parse_hook(hook_name or DEFAULT_HOOK, layers)
        return FeatureSource(hook, FEATURE_KINDS[hook.site], hook_width(subject.model, hook))
    sae = load_sae(sae_path, layer=layer_of(hook_name))  # --hook mlp_in.L picks a transcoder set's layer L
    named = hook_name or sae.hook
    if not named:
        raise InterpError(f"SAE '{sae_path}' does not say which hook it reads; pass --hook")
    hook = parse_hook(named, layers)
    if sae.hook is not None and hook_name and parse_hook(sae.hook, layers) != hook:
        raise InterpError(f"--hook {hook_name} disagrees with the hook SAE '{sae_path}' reads ({sae.hook})")
    check_fits(sae, hook_width(subject.model, hook), hook.name, sae_path)
    folder = Path(sae_path) if Path(sae_path).is_dir() else Path(sae_path).parent
    if sae.hook_out is not None:
        check_fits(sae, hook_width(subject.model, parse_hook(sae.hook_out, layers)), sae.hook_out, sae_path,
                   output=True)
    return FeatureSource(hook, "transcoder" if sae.is_transcoder else "sae", sae.d_sae, sae.to(subject.device),
                         str(Path(sae_path).resolve()), sha256_folder_weights(folder))
