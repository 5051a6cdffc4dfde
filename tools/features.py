"""What a feature set's features are: a hook's own dimensions (MLP neurons, residual or attention
dimensions) or the latents of an SAE read at that hook."""

from dataclasses import dataclass
from pathlib import Path

import torch

from tools.configs import DEFAULT_HOOK
from tools.errors import InterpError
from tools.hooks import HookPoint, hook_width, n_layers, parse_hook
from tools.model import SubjectModel, sha256_folder_weights
from tools.sae import SAE
from tools.sae_formats import check_fits, load_sae

FEATURE_KINDS = {"mlp": "neuron", "resid_pre": "residual", "resid_post": "residual", "attn": "attention"}


@dataclass
class FeatureSource:
    """What a feature set's features are: a hook's own dimensions, or an SAE's latents read at that hook."""

    hook: HookPoint
    kind: str
    """neuron | residual | attention | sae"""
    width: int
    sae: SAE | None = None
    path: str | None = None
    sha256: str | None = None

    def features(self, acts: torch.Tensor) -> torch.Tensor:
        """[B, seq, hook width] -> [B, seq, features]."""
        return self.sae.encode(acts.float()) if self.sae is not None else acts


def resolve_features(hook_name: str, sae_path: str, subject: SubjectModel) -> FeatureSource:
    """The hook's own dimensions, or the latents of the SAE at `sae_path` (whose file may name the hook)."""
    layers = n_layers(subject.model)
    if not sae_path:
        hook = parse_hook(hook_name or DEFAULT_HOOK, layers)
        return FeatureSource(hook, FEATURE_KINDS[hook.site], hook_width(subject.model, hook))
    sae = load_sae(sae_path)
    if not hook_name and sae.hook is None:
        raise InterpError(f"SAE '{sae_path}' does not say which hook it reads; pass --hook")
    hook = parse_hook(hook_name or sae.hook, layers)
    if sae.hook is not None and hook_name and parse_hook(sae.hook, layers) != hook:
        raise InterpError(f"--hook {hook_name} disagrees with the hook SAE '{sae_path}' reads ({sae.hook})")
    check_fits(sae, hook_width(subject.model, hook), hook.name, sae_path)
    folder = Path(sae_path) if Path(sae_path).is_dir() else Path(sae_path).parent
    return FeatureSource(hook, "sae", sae.d_sae, sae.to(subject.device), str(Path(sae_path).resolve()),
                         sha256_folder_weights(folder))
