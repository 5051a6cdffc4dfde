"""How good an SAE is on held-out tokens: reconstruction, sparsity, dead latents, and what splicing it
into the model costs in next-token loss.

- FVU: sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over real tokens (0 is perfect, 1 is no better than
  the mean).
- mean L0: active latents per token; dead fraction: latents that never fire on these tokens.
- next-token loss (nats) of the clean model, with the hook's activation replaced by the SAE's
  reconstruction, and with it replaced by zeros; loss recovered = (zero - spliced) / (zero - clean).

Replacement touches real tokens only: BOS keeps its own activation, since SAEs are not trained on the
attention sink and splicing it would measure that instead of the SAE.
"""

import dataclasses
import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from tools.catalog import Catalog
from tools.configs import SAEEvalConfig
from tools.data.windows import content_mask
from tools.errors import InterpError
from tools.model.hooks import HookPoint, replaced, run_to_hooks
from tools.model.subject import SubjectModel
from tools.passes.cache import checked_inputs, model_row, package_versions, prepare_windows
from tools.sae.autoencoder import SAE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SAEQuality:
    tokens: int
    fvu: float
    mean_l0: float
    dead_fraction: float
    loss_clean: float
    loss_spliced: float
    loss_zero_ablated: float

    @property
    def loss_increase(self) -> float:
        return self.loss_spliced - self.loss_clean

    @property
    def loss_recovered(self) -> float:
        gap = self.loss_zero_ablated - self.loss_clean
        return (self.loss_zero_ablated - self.loss_spliced) / gap if gap else float("nan")

    def as_row(self) -> dict:
        return {**asdict(self), "loss_increase": self.loss_increase, "loss_recovered": self.loss_recovered}


def next_token_loss(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[float, int]:
    """(sum of cross-entropy, count) over predictions whose target is a real token."""
    losses = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), input_ids[:, 1:].flatten(), reduction="none")
    keep = mask[:, 1:].flatten()
    return float(losses[keep].sum()), int(keep.sum())


@torch.inference_mode()
def evaluate_sae(subject: SubjectModel, sae: SAE, hook: HookPoint, windows: torch.Tensor,
                 batch_size: int = 4, progress: bool = False) -> SAEQuality:
    """Batches are small because each forward materialises [batch, seq, vocab] logits (262k for Gemma)."""
    model = subject.model
    squared_error = total_square = 0.0
    feature_sum = torch.zeros(sae.d_in, dtype=torch.float64, device=subject.device)
    active_total, n_tokens = 0, 0
    fired = torch.zeros(sae.d_sae, dtype=torch.bool, device=subject.device)
    loss = {"clean": [0.0, 0], "spliced": [0.0, 0], "zero": [0.0, 0]}
    for start in tqdm(range(0, len(windows), batch_size), unit="batch", disable=not progress, desc="eval SAE"):
        input_ids = windows[start:start + batch_size].to(subject.device)  # [B, seq]
        mask = content_mask(input_ids, subject.tokenizer)  # [B, seq]
        x = run_to_hooks(model, input_ids, [hook])[hook.name]  # [B, seq, d_in]
        latents = sae.encode(x.float())  # [B, seq, d_sae]
        reconstruction = sae.decode(latents)  # [B, seq, d_in]
        real_x, real_latents = x[mask].double(), latents[mask]
        squared_error += float(((real_x - reconstruction[mask].double()) ** 2).sum())
        feature_sum += real_x.sum(dim=0)
        total_square += float((real_x**2).sum())
        n_tokens += real_x.shape[0]
        active_total += int((real_latents > 0).sum())
        fired |= (real_latents > 0).any(dim=0)
        replacements = {
            "clean": None,
            "spliced": lambda act, r=reconstruction, m=mask: torch.where(m[:, :, None], r.to(act.dtype), act),
            "zero": lambda act, m=mask: act.masked_fill(m[:, :, None], 0.0),
        }
        for name, replace in replacements.items():
            if replace is None:
                logits = model(input_ids=input_ids, use_cache=False).logits
            else:
                with replaced(model, hook, replace):
                    logits = model(input_ids=input_ids, use_cache=False).logits
            total, count = next_token_loss(logits, input_ids, mask)
            loss[name][0] += total
            loss[name][1] += count
    total_variance = total_square - float((feature_sum**2).sum()) / max(n_tokens, 1)
    return SAEQuality(
        tokens=n_tokens,
        fvu=squared_error / total_variance if total_variance > 0 else float("nan"),
        mean_l0=active_total / max(n_tokens, 1),
        dead_fraction=float((~fired).float().mean()),
        loss_clean=loss["clean"][0] / max(loss["clean"][1], 1),
        loss_spliced=loss["spliced"][0] / max(loss["spliced"][1], 1),
        loss_zero_ablated=loss["zero"][0] / max(loss["zero"][1], 1),
    )


def run_sae_eval(config: SAEEvalConfig, catalog_path: Path, progress: bool = False) -> SAEQuality:
    """Evaluate on held-out documents and record the result (a run and a sae_evals row)."""
    catalog_path = Path(catalog_path)
    corpus, subject, source = checked_inputs(config, catalog_path)
    windows = prepare_windows(config, subject, part="held_out")
    log.info(f"evaluating SAE {config.sae} ({source.width} latents at {source.hook.name}) on "
          f"{windows.numel():,} held-out tokens")
    if source.sae is None:
        raise InterpError(f"'{config.sae}' gave no SAE to evaluate")
    if source.sae.is_transcoder:
        raise InterpError(f"'{config.sae}' is a transcoder ({source.sae.hook} -> {source.sae.hook_out}); evaluate its "
                          "set with `interp transcoder eval --transcoders DIR`")
    quality = evaluate_sae(subject, source.sae, source.hook, windows, config.batch_size, progress)
    config_dict = dataclasses.asdict(config)
    config_hash = hashlib.sha256(json.dumps(config_dict, sort_keys=True).encode()).hexdigest()[:16]
    with Catalog.run(catalog_path, "sae_eval", config_dict, config_hash, corpus, package_versions()) as run_id:
        with Catalog(catalog_path) as catalog, catalog.transaction():
            catalog.record_model(model_row(subject, run_id))
            catalog.record_sae_eval({"run_id": run_id, "model_id": subject.sha256, "hook": source.hook.name,
                                     "sae_path": source.path, "sae_sha256": source.sha256, **quality.as_row()})
            catalog.con.execute("UPDATE runs SET model_id = ?, tokens = ? WHERE run_id = ?",
                                [subject.sha256, quality.tokens, run_id])
            catalog.set_run_status(run_id, "complete")
    return quality
