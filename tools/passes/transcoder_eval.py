"""How good a transcoder set is on held-out tokens, layer by layer and as a whole replacement model.

Per layer: FVU of the MLP output it predicts (sum ||y - y_hat||^2 / sum ||y - mean(y)||^2 over real tokens),
mean L0, the fraction of latents that never fire, and the next-token loss with that layer's MLP replaced by its
transcoder, beside the clean model and that MLP zeroed: loss recovered = (zero - spliced) / (zero - clean).
The replacement model puts every transcoder in at once, each reading the input the replaced model itself
computes, and is measured against every MLP zeroed. As for SAEs, BOS keeps its own MLP output: transcoders are
not trained on the attention sink.
"""

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from tools.catalog import Catalog, check_catalog_path
from tools.configs import TranscoderEvalConfig
from tools.data.corpus import CorpusSpec, describe
from tools.data.windows import content_mask
from tools.errors import InterpError
from tools.model.hooks import HookPoint, MlpSplice, n_layers, recorded, spliced_mlps
from tools.model.subject import SubjectModel, load_subject_model, sha256_folder_weights
from tools.passes.cache import model_row, package_versions, prepare_windows
from tools.passes.sae_eval import next_token_loss
from tools.sae.autoencoder import SAE
from tools.sae.transcoders import load_transcoder_set

log = logging.getLogger(__name__)

REPLACEMENT = "replacement"
"""The hook of a sae_evals row that judges a transcoder set as a whole (every MLP replaced at once)."""


@dataclass(frozen=True)
class LayerQuality:
    layer: int
    fvu: float
    mean_l0: float
    dead_fraction: float
    loss_spliced: float
    loss_zero_ablated: float
    loss_recovered: float


@dataclass(frozen=True)
class SetQuality:
    tokens: int
    loss_clean: float
    loss_replacement: float
    """Every transcoder in at once."""
    loss_all_zero_ablated: float
    loss_recovered: float
    layers: list[LayerQuality]


def recovered(zero: float, spliced: float, clean: float) -> float:
    gap = zero - clean
    return (zero - spliced) / gap if gap else float("nan")


class Losses:
    """Summed next-token losses of each condition, and their token count."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, name: str, loss: float) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + loss

    def mean(self, name: str) -> float:
        return self.sums[name] / max(self.count, 1)


def splice(transcoder: SAE | None, mask: torch.Tensor) -> MlpSplice:
    """The transcoder's prediction (or zeros, for None) in place of the MLP output, on real tokens only."""
    def replace(inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        new = torch.zeros_like(outputs) if transcoder is None else transcoder.forward(inputs.float()).to(outputs.dtype)
        return torch.where(mask[..., None], new, outputs)
    return replace


def run_transcoder_eval(config: TranscoderEvalConfig, catalog_path: Path, progress: bool = False) -> SetQuality:
    """Evaluate and record the result: a run, one sae_evals row per layer (its hook, the set's sha256 as its
    feature sets have it) and one row with hook 'replacement' for every transcoder at once."""
    config.validate()
    catalog_path = Path(catalog_path)
    check_catalog_path(catalog_path)
    corpus = describe(CorpusSpec(config.corpus, config.text_column))
    folder = Path(config.transcoders)
    transcoders = load_transcoder_set(folder)
    subject = load_subject_model(config.model, config.device, config.dtype)
    total_layers = n_layers(subject.model)
    if max(transcoders) >= total_layers:
        raise InterpError(f"'{config.transcoders}' has a transcoder for layer {max(transcoders)}; {config.model} has "
                          f"layers 0..{total_layers - 1}")
    quality = evaluate_set(config, subject, transcoders, progress)
    set_sha256 = sha256_folder_weights(folder)
    config_dict = dataclasses.asdict(config)
    config_hash = hashlib.sha256(json.dumps(config_dict, sort_keys=True).encode()).hexdigest()[:16]
    common = {"model_id": subject.sha256, "sae_path": str(folder.resolve()), "sae_sha256": set_sha256}
    with Catalog.run(catalog_path, "transcoder_eval", config_dict, config_hash, corpus, package_versions()) as run_id:
        with Catalog(catalog_path) as catalog, catalog.transaction():
            catalog.record_model(model_row(subject, run_id))
            for layer in quality.layers:
                catalog.record_sae_eval({
                    "run_id": run_id, **common, "hook": f"mlp_in.{layer.layer}", "tokens": quality.tokens,
                    "fvu": layer.fvu, "mean_l0": layer.mean_l0, "dead_fraction": layer.dead_fraction,
                    "loss_clean": quality.loss_clean, "loss_spliced": layer.loss_spliced,
                    "loss_zero_ablated": layer.loss_zero_ablated,
                    "loss_increase": layer.loss_spliced - quality.loss_clean, "loss_recovered": layer.loss_recovered})
            catalog.record_sae_eval({
                "run_id": run_id, **common, "hook": REPLACEMENT, "tokens": quality.tokens,
                "loss_clean": quality.loss_clean, "loss_spliced": quality.loss_replacement,
                "loss_zero_ablated": quality.loss_all_zero_ablated,
                "loss_increase": quality.loss_replacement - quality.loss_clean,
                "loss_recovered": quality.loss_recovered})
            catalog.con.execute("UPDATE runs SET model_id = ?, tokens = ? WHERE run_id = ?",
                                [subject.sha256, quality.tokens, run_id])
            catalog.set_run_status(run_id, "complete")
    return quality


@torch.inference_mode()
def evaluate_set(config: TranscoderEvalConfig, subject: SubjectModel, transcoders: dict[int, SAE],
                 progress: bool = False) -> SetQuality:
    for transcoder in transcoders.values():
        transcoder.to(subject.device)
    windows = prepare_windows(config, subject, part="held_out")  # type: ignore[arg-type]
    model = subject.model
    hooks = [HookPoint(site, layer) for layer in transcoders for site in ("mlp_in", "mlp_out")]
    losses = Losses()
    error = {layer: 0.0 for layer in transcoders}
    sums = {layer: torch.zeros(transcoders[layer].d_out, dtype=torch.float64, device=subject.device)
            for layer in transcoders}
    squares = dict.fromkeys(transcoders, 0.0)
    active = dict.fromkeys(transcoders, 0.0)
    real_tokens = 0
    fired = {layer: torch.zeros(t.d_sae, dtype=torch.bool, device=subject.device) for layer, t in transcoders.items()}
    for start in tqdm(range(0, len(windows), config.batch_size), unit="batch", disable=not progress,
                      desc="eval transcoders"):
        input_ids = windows[start:start + config.batch_size].to(subject.device)
        mask = content_mask(input_ids, subject.tokenizer)
        acts: dict[str, torch.Tensor] = {}
        with recorded(model, hooks, acts):
            logits = model(input_ids=input_ids, use_cache=False).logits
        clean, count = next_token_loss(logits, input_ids, mask)
        losses.add("clean", clean)
        losses.count += count
        real_tokens += int(mask.sum())
        for layer, transcoder in transcoders.items():
            x, y = acts[f"mlp_in.{layer}"][mask].float(), acts[f"mlp_out.{layer}"][mask].float()
            latents = transcoder.encode(x)
            error[layer] += float((transcoder.forward(x) - y).pow(2).sum())
            sums[layer] += y.sum(0).double()
            squares[layer] += float(y.double().pow(2).sum())
            active[layer] += float((latents > 0).sum())
            fired[layer] |= (latents > 0).any(0)
            for name, replacement in ((f"spliced.{layer}", transcoder), (f"zero.{layer}", None)):
                with spliced_mlps(model, {layer: splice(replacement, mask)}):
                    losses.add(name, next_token_loss(model(input_ids=input_ids, use_cache=False).logits, input_ids,
                                                     mask)[0])
        for name, every in (("replacement", transcoders), ("all_zero", dict.fromkeys(transcoders))):
            with spliced_mlps(model, {layer: splice(t, mask) for layer, t in every.items()}):
                losses.add(name, next_token_loss(model(input_ids=input_ids, use_cache=False).logits, input_ids,
                                                 mask)[0])
    layers = []
    for layer in transcoders:
        variance = squares[layer] - float(sums[layer].pow(2).sum()) / max(real_tokens, 1)
        layers.append(LayerQuality(
            layer, error[layer] / max(variance, 1e-12), active[layer] / max(real_tokens, 1),
            1.0 - float(fired[layer].float().mean()), losses.mean(f"spliced.{layer}"), losses.mean(f"zero.{layer}"),
            recovered(losses.mean(f"zero.{layer}"), losses.mean(f"spliced.{layer}"), losses.mean("clean"))))
    quality = SetQuality(losses.count, losses.mean("clean"), losses.mean("replacement"), losses.mean("all_zero"),
                         recovered(losses.mean("all_zero"), losses.mean("replacement"), losses.mean("clean")), layers)
    log.info(f"evaluated {len(layers)} transcoders on {quality.tokens:,} held-out next-token predictions")
    return quality
