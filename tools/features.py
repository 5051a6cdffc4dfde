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

PLANTED_HOOK = "planted"
"""`--hook planted`: the planted features of evals/planted.py, rules over tokens with known meanings."""
NOT_IN_MODEL = ("planted features are rules over tokens, not part of the model: they can be read on text "
                "(activations_on) but not ablated, steered, patched or traced to the logits")
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

    def read(self, subject: SubjectModel, input_ids: torch.Tensor) -> torch.Tensor:
        """The features on token ids: [B, seq] -> [B, seq, features]."""
        from tools.hooks import run_to_hooks

        return self.features(run_to_hooks(subject.model, input_ids, [self.hook])[self.hook.name])

    @property
    def hook_name(self) -> str:
        return self.hook.name

    @property
    def name(self) -> str:
        """What a feature set is named after: its hook, and -sae for an SAE's latents."""
        return f"{self.hook.name}{'-sae' if self.sae is not None else ''}"

    def hf_module(self, model) -> str:
        from tools.hooks import hf_module_path

        return hf_module_path(model, self.hook)

    @property
    def in_model(self) -> bool:
        """Whether the features are part of the model, so they can be ablated, steered and patched."""
        return True


def resolve_features(hook_name: str, sae_path: str, subject: SubjectModel) -> FeatureSource:
    """The hook's own dimensions, or the latents of the SAE at `sae_path` (whose file may name the hook)."""
    if hook_name == PLANTED_HOOK:
        from evals.planted import PlantedSource  # the planted benchmark's rules stand in for a model's features

        return PlantedSource.over(subject)
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
