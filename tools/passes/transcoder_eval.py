"""How good a transcoder set is on held-out tokens, layer by layer and as a whole replacement model, each
beside what a linear map and a constant would do in its place.

Per layer: FVU of the MLP output it predicts (sum ||y - y_hat||^2 / sum ||y - mean(y)||^2 over real tokens),
mean L0, the fraction of latents that never fire over `dead_tokens` tokens of the corpus (a cheap pass with no
logits: a latent silent on 2k tokens may only be rare), and the next-token loss with that layer's MLP replaced,
beside the clean model and that MLP zeroed: loss recovered = (zero - spliced) / (zero - clean). Beside each
transcoder, two baselines: "linear", the layer's ridge fit of output on input (tools/sae/linear.py), and
"mean", its mean output; both fitted on `fit_tokens` tokens of the train part. A transcoder's latents earn
their keep only where it beats its own linear fit.

For the whole set: every transcoder at once (the replacement model), each reading the input the replaced model
itself computes, beside every layer linear, every MLP mean-ablated and every MLP zeroed. As for SAEs, BOS keeps
its own MLP output: transcoders are not trained on the attention sink.
"""

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from tools.catalog import Catalog, check_catalog_path
from tools.configs import TranscoderEvalConfig
from tools.data.corpus import CorpusSpec, describe
from tools.data.windows import content_mask
from tools.errors import InterpError
from tools.model.hooks import HookPoint, MlpSplice, n_layers, recorded, run_to_hooks, spliced_mlps
from tools.model.subject import SubjectModel, load_subject_model, sha256_folder_weights
from tools.passes.cache import model_row, package_versions, prepare_windows
from tools.passes.sae_eval import next_token_loss
from tools.sae.autoencoder import SAE
from tools.sae.linear import ridge_fit
from tools.sae.transcoders import load_transcoder_set

log = logging.getLogger(__name__)

REPLACEMENT = "replacement"
"""The hook of a sae_evals row that judges a transcoder set as a whole (every MLP replaced at once)."""
BASELINES = ("linear", "mean")
Predictor = Callable[[torch.Tensor], torch.Tensor]
"""MLP input [..., d_in] -> a predicted MLP output [..., d_out]."""


@dataclass(frozen=True)
class LayerQuality:
    layer: int
    fvu: float
    mean_l0: float
    dead_fraction: float
    loss_spliced: float
    loss_zero_ablated: float
    loss_recovered: float
    linear_fvu: float
    loss_linear: float
    linear_recovered: float
    """The layer's ridge fit in place of its MLP."""
    loss_mean: float
    mean_recovered: float
    """Its mean output in place of its MLP."""


@dataclass(frozen=True)
class SetQuality:
    tokens: int
    dead_tokens: int
    """Corpus tokens the dead fractions were counted over."""
    loss_clean: float
    loss_replacement: float
    """Every transcoder in at once."""
    loss_all_zero_ablated: float
    loss_recovered: float
    loss_linear_only: float
    linear_recovered: float
    loss_all_mean: float
    mean_recovered: float
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


def splice(predict: Predictor | None, mask: torch.Tensor) -> MlpSplice:
    """`predict`'s output (or zeros, for None) in place of the MLP output, on real tokens only."""
    def replace(inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        new = torch.zeros_like(outputs) if predict is None else predict(inputs.float()).to(outputs.dtype)
        return torch.where(mask[..., None], new, outputs)
    return replace


@dataclass(frozen=True)
class Baselines:
    """Per layer, the ridge fit (W, b) of MLP output on input and the mean output, from the train part."""

    linear: dict[int, tuple[torch.Tensor, torch.Tensor]]
    mean: dict[int, torch.Tensor]

    def predictors(self, layer: int) -> dict[str, Predictor]:
        weight, bias = self.linear[layer]
        mean = self.mean[layer]
        return {"linear": lambda x: x @ weight + bias, "mean": lambda x: mean.expand(*x.shape[:-1], -1)}


def run_transcoder_eval(config: TranscoderEvalConfig, catalog_path: Path, progress: bool = False) -> SetQuality:
    """Evaluate and record the result: a run; per layer a sae_evals row for the transcoder and one for each
    baseline (`baseline` 'linear', 'mean'); for the whole set a row with hook 'replacement' for every transcoder
    at once, and one per baseline (every layer linear, every MLP mean-ablated)."""
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
    if config.layers != "all":
        wanted = {int(part) for part in config.layers.split(",")}
        missing = sorted(wanted - set(transcoders))
        if missing:
            raise InterpError(f"--layers {config.layers}: '{config.transcoders}' has no transcoder for layers "
                              f"{missing}; it has {sorted(transcoders)}")
        transcoders = {layer: transcoders[layer] for layer in sorted(wanted)}
    quality = evaluate_set(config, subject, transcoders, progress)
    set_sha256 = sha256_folder_weights(folder)
    config_dict = dataclasses.asdict(config)
    config_hash = hashlib.sha256(json.dumps(config_dict, sort_keys=True).encode()).hexdigest()[:16]
    common = {"model_id": subject.sha256, "sae_path": str(folder.resolve()), "sae_sha256": set_sha256,
              "tokens": quality.tokens, "loss_clean": quality.loss_clean}
    with Catalog.run(catalog_path, "transcoder_eval", config_dict, config_hash, corpus, package_versions()) as run_id:
        with Catalog(catalog_path) as catalog, catalog.transaction():
            catalog.record_model(model_row(subject, run_id))
            for row in eval_rows(quality):
                catalog.record_sae_eval({"run_id": run_id, **common, **row,
                                         "loss_increase": row["loss_spliced"] - quality.loss_clean})
            catalog.con.execute("UPDATE runs SET model_id = ?, tokens = ? WHERE run_id = ?",
                                [subject.sha256, quality.tokens, run_id])
            catalog.set_run_status(run_id, "complete")
    return quality


def eval_rows(quality: SetQuality) -> list[dict]:
    """The sae_evals rows of one eval, without the columns every row shares."""
    rows: list[dict] = []
    for layer in quality.layers:
        hook = f"mlp_in.{layer.layer}"
        rows += [
            {"hook": hook, "baseline": None, "fvu": layer.fvu, "mean_l0": layer.mean_l0,
             "dead_fraction": layer.dead_fraction, "dead_tokens": quality.dead_tokens,
             "loss_spliced": layer.loss_spliced, "loss_zero_ablated": layer.loss_zero_ablated,
             "loss_recovered": layer.loss_recovered},
            {"hook": hook, "baseline": "linear", "fvu": layer.linear_fvu, "loss_spliced": layer.loss_linear,
             "loss_zero_ablated": layer.loss_zero_ablated, "loss_recovered": layer.linear_recovered},
            {"hook": hook, "baseline": "mean", "fvu": 1.0, "loss_spliced": layer.loss_mean,
             "loss_zero_ablated": layer.loss_zero_ablated, "loss_recovered": layer.mean_recovered}]
    for baseline, loss, share in ((None, quality.loss_replacement, quality.loss_recovered),
                                  ("linear", quality.loss_linear_only, quality.linear_recovered),
                                  ("mean", quality.loss_all_mean, quality.mean_recovered)):
        rows.append({"hook": REPLACEMENT, "baseline": baseline, "loss_spliced": loss,
                     "loss_zero_ablated": quality.loss_all_zero_ablated, "loss_recovered": share})
    return rows


@torch.inference_mode()
def fit_baselines(config: TranscoderEvalConfig, subject: SubjectModel, layers: list[int]) -> Baselines:
    """Each layer's ridge fit and mean output on `fit_tokens` real tokens of the train part (the eval's own
    tokens are held out from them)."""
    windows = prepare_windows(dataclasses.replace(config, tokens=config.fit_tokens), subject,  # type: ignore[arg-type]
                              part="train")
    hooks = [HookPoint(site, layer) for layer in layers for site in ("mlp_in", "mlp_out")]
    inputs: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    outputs: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    for start in range(0, len(windows), config.batch_size * 4):
        input_ids = windows[start:start + config.batch_size * 4].to(subject.device)
        acts, mask = run_to_hooks(subject.model, input_ids, hooks), content_mask(input_ids, subject.tokenizer)
        for layer in layers:
            inputs[layer].append(acts[f"mlp_in.{layer}"][mask].float())
            outputs[layer].append(acts[f"mlp_out.{layer}"][mask].float())
    linear, mean = {}, {}
    for layer in layers:
        x, y = torch.cat(inputs[layer]), torch.cat(outputs[layer])
        linear[layer], mean[layer] = ridge_fit(x, y), y.mean(dim=0)
    return Baselines(linear, mean)


@torch.inference_mode()
def count_dead(config: TranscoderEvalConfig, subject: SubjectModel, transcoders: dict[int, SAE],
               progress: bool) -> tuple[dict[int, float], int]:
    """Each layer's share of latents that never fire over `dead_tokens` tokens of the whole corpus (a latent
    silent on every document is dead, whichever split it is in; the held-out part alone is too small on the
    embedded corpus), read with no logits (the forward stops at the last layer asked for); and the tokens it
    covered."""
    # Windows count BOS and separators too: take enough for `dead_tokens` real tokens, then stop there.
    wanted = int(config.dead_tokens * 1.1) + config.window
    windows = prepare_windows(dataclasses.replace(config, tokens=wanted), subject, part="all")  # type: ignore[arg-type]
    hooks = [HookPoint("mlp_in", layer) for layer in transcoders]
    fired = {layer: torch.zeros(t.d_sae, dtype=torch.bool, device=subject.device) for layer, t in transcoders.items()}
    tokens = 0
    step = config.batch_size * 4
    for start in tqdm(range(0, len(windows), step), unit="batch", disable=not progress, desc="count dead latents"):
        if tokens >= config.dead_tokens:
            break
        input_ids = windows[start:start + step].to(subject.device)
        acts, mask = run_to_hooks(subject.model, input_ids, hooks), content_mask(input_ids, subject.tokenizer)
        tokens += int(mask.sum())
        for layer, transcoder in transcoders.items():
            codes = transcoder.encode_sparse(acts[f"mlp_in.{layer}"][mask].float())
            fired[layer][codes.cols] = True
    return {layer: 1.0 - float(seen.float().mean()) for layer, seen in fired.items()}, tokens


@torch.inference_mode()
def evaluate_set(config: TranscoderEvalConfig, subject: SubjectModel, transcoders: dict[int, SAE],
                 progress: bool = False) -> SetQuality:
    for transcoder in transcoders.values():
        transcoder.to(subject.device)
    baselines = fit_baselines(config, subject, list(transcoders))
    dead, dead_tokens = count_dead(config, subject, transcoders, progress)
    windows = prepare_windows(config, subject, part="held_out")  # type: ignore[arg-type]
    model = subject.model
    hooks = [HookPoint(site, layer) for layer in transcoders for site in ("mlp_in", "mlp_out")]
    losses = Losses()
    errors = {(layer, name): 0.0 for layer in transcoders for name in ("transcoder", "linear")}
    sums = {layer: torch.zeros(transcoders[layer].d_out, dtype=torch.float64, device=subject.device)
            for layer in transcoders}
    squares = dict.fromkeys(transcoders, 0.0)
    active = dict.fromkeys(transcoders, 0.0)
    real_tokens = 0
    predictors = {layer: {"transcoder": transcoder.forward, **baselines.predictors(layer)}
                  for layer, transcoder in transcoders.items()}  # each way to fill a layer's MLP output, by name
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

        def loss_with(splices: dict[int, MlpSplice], input_ids: torch.Tensor = input_ids,
                      mask: torch.Tensor = mask) -> float:
            with spliced_mlps(model, splices):
                return next_token_loss(model(input_ids=input_ids, use_cache=False).logits, input_ids, mask)[0]

        for layer, transcoder in transcoders.items():
            x, y = acts[f"mlp_in.{layer}"][mask].float(), acts[f"mlp_out.{layer}"][mask].float()
            for name in ("transcoder", "linear"):
                errors[layer, name] += float((predictors[layer][name](x) - y).pow(2).sum())
            sums[layer] += y.sum(0).double()
            squares[layer] += float(y.double().pow(2).sum())
            active[layer] += float((transcoder.encode(x) > 0).sum())
            for name, predict in (*predictors[layer].items(), ("zero", None)):
                losses.add(f"{name}.{layer}", loss_with({layer: splice(predict, mask)}))
        if len(transcoders) == 1:  # the whole set is that layer: no forward to repeat
            (layer,) = transcoders
            for name in ("transcoder", *BASELINES, "zero"):
                losses.sums[f"{name}.all"] = losses.sums[f"{name}.{layer}"]
            continue
        for name in ("transcoder", *BASELINES):
            losses.add(f"{name}.all", loss_with({layer: splice(predictors[layer][name], mask)
                                                 for layer in transcoders}))
        losses.add("zero.all", loss_with({layer: splice(None, mask) for layer in transcoders}))
    clean_loss = losses.mean("clean")

    def share(name: str, scope: object) -> float:
        return recovered(losses.mean(f"zero.{scope}"), losses.mean(f"{name}.{scope}"), clean_loss)

    layers = []
    for layer in transcoders:
        variance = max(squares[layer] - float(sums[layer].pow(2).sum()) / max(real_tokens, 1), 1e-12)
        layers.append(LayerQuality(
            layer, errors[layer, "transcoder"] / variance, active[layer] / max(real_tokens, 1), dead[layer],
            losses.mean(f"transcoder.{layer}"), losses.mean(f"zero.{layer}"), share("transcoder", layer),
            errors[layer, "linear"] / variance, losses.mean(f"linear.{layer}"), share("linear", layer),
            losses.mean(f"mean.{layer}"), share("mean", layer)))
    quality = SetQuality(losses.count, dead_tokens, clean_loss, losses.mean("transcoder.all"),
                         losses.mean("zero.all"), share("transcoder", "all"), losses.mean("linear.all"),
                         share("linear", "all"), losses.mean("mean.all"), share("mean", "all"), layers)
    log.info(f"evaluated {len(layers)} transcoders on {quality.tokens:,} held-out next-token predictions; dead "
             f"latents counted over {dead_tokens:,} tokens of the corpus")
    return quality
