"""Causal experiments on features: ablate them, clamp them, steer with them, read their direct logit effect.

Every edit is a change to one or more features' values at the hook, at every position but the first (BOS):
- a hook dimension (neuron, residual or attention dimension) is edited in place;
- an SAE latent is edited in latent space and only the change goes back into the model:
  act + (edited - latents) @ W_dec. The SAE's reconstruction error stays in, so with nothing edited the
  model's output is exactly the original, and an edit changes only that latent's contribution.
Steering by `strength` adds strength x the feature's output direction (an SAE decoder row, a neuron's
down-projection column, or a unit vector for a residual dimension).
"""

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tools.catalog import Catalog
from tools.errors import InterpError
from tools.features import FeatureSource, resolve_features
from tools.model.hooks import MlpSplice, hooked_module, replaced, spliced_mlps
from tools.model.subject import SubjectModel, load_subject_model
from tools.sae.autoencoder import SAE
from tools.sae.transcoders import layer_of

Edit = Callable[[torch.Tensor], torch.Tensor]
"""Takes the edited features' values [batch, seq, n_features] and returns new values."""
Features = int | list[int]


def set_to(value: float | list[float]) -> Edit:
    """Each feature to its value (one value for all, or one per feature)."""
    return lambda values: torch.zeros_like(values) + torch.as_tensor(value, dtype=values.dtype, device=values.device)


def add(amount: float) -> Edit:
    return lambda values: values + amount


def require_in_model(source: FeatureSource) -> None:
    if source.not_in_model:
        raise InterpError(source.not_in_model)


def edited_activation(source: FeatureSource, features: Features, edit: Edit) -> Callable[[torch.Tensor], torch.Tensor]:
    """A replacement for the hook's activation [batch, seq, width] that applies `edit` to `features`."""
    require_in_model(source)
    index = [features] if isinstance(features, int) else list(features)

    def replace(act: torch.Tensor) -> torch.Tensor:
        if source.sae is None:
            out = act.clone()
            out[:, 1:, index] = edit(act[:, 1:, index].float()).to(act.dtype)
            return out
        values = source.sae.encode(act[:, 1:].float())[..., index]  # [batch, seq - 1, n]
        change = (edit(values) - values) @ source.sae.W_dec[index]  # [batch, seq - 1, d_in]
        out = act.clone()
        out[:, 1:] = (act[:, 1:].float() + change).to(act.dtype)
        return out

    return replace


def transcoder_edit(transcoder: SAE, features: Features, edit: Edit) -> MlpSplice:
    """A transcoder latent's edit, made where the latent writes: the MLP's output gains (edited - latents) @
    W_dec, the latents read off the MLP's input in the same forward. As for SAE latents, the transcoder's own
    error stays in, so an empty edit leaves the output bit for bit; BOS is left alone."""
    index = [features] if isinstance(features, int) else list(features)

    def splice(inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        values = transcoder.encode(inputs[:, 1:].float())[..., index]  # [batch, seq - 1, n]
        change = (edit(values) - values) @ transcoder.W_dec[index]  # [batch, seq - 1, d_out]
        out = outputs.clone()
        out[:, 1:] = (outputs[:, 1:].float() + change).to(outputs.dtype)
        return out

    return splice


def editing(subject: SubjectModel, source: FeatureSource, features: Features, edit: Edit) -> AbstractContextManager:
    """While open, the model runs with `edit` applied to `features`: at the hook they are read at, or, for a
    transcoder's latents, in the MLP output they write to."""
    if source.sae is not None and source.sae.is_transcoder:
        layer = layer_of(source.sae.hook_out)
        assert layer is not None  # a transcoder's output hook is mlp_out.L
        require_in_model(source)
        return spliced_mlps(subject.model, {layer: transcoder_edit(source.sae, features, edit)})
    return replaced(subject.model, source.hook, edited_activation(source, features, edit))


def output_direction(subject: SubjectModel, source: FeatureSource, feature: int) -> torch.Tensor:
    """What one unit of the feature writes into the residual stream [d_model]."""
    require_in_model(source)
    if source.sae is not None:
        return source.sae.W_dec[feature].float()
    if source.hook.site == "mlp":
        down = hooked_module(subject.model, source.hook)
        weight = torch.as_tensor(down.weight).float()
        return weight[:, feature] if isinstance(down, torch.nn.Linear) else weight[feature]
    direction = torch.zeros(source.width, device=subject.device)
    direction[feature] = 1.0
    return direction


def direct_logit_effect(subject: SubjectModel, source: FeatureSource, feature: int) -> torch.Tensor:
    """Logits [vocab] the output direction produces through the unembedding alone.

    It skips the final normalization and every later layer, as the usual "logit lens" reading does;
    for an MLP neuron or an early layer the real effect also passes through what comes after."""
    return direct_logit_effects(subject, source, [feature])[0]


@torch.inference_mode()
def direct_logit_effects(subject: SubjectModel, source: FeatureSource, features: list[int]) -> torch.Tensor:
    """`direct_logit_effect` of many features at once [len(features), vocab]: the unembedding is read (and
    cast) once, not once a feature, which is most of the cost for a large vocabulary."""
    unembedding = subject.model.get_output_embeddings().weight.float()  # [vocab, d_model]
    directions = torch.stack([output_direction(subject, source, feature) for feature in features])
    return directions @ unembedding.T


def logit_tokens(subject: SubjectModel, source: FeatureSource, feature: int, n: int) -> tuple[list[str], list[str]]:
    """The `n` tokens the feature's direct logit effect raises most and the `n` it lowers most, as text."""
    return top_and_bottom_tokens(subject, direct_logit_effects(subject, source, [feature]), n)[0]


def top_and_bottom_tokens(subject: SubjectModel, effects: torch.Tensor, n: int) -> list[tuple[list[str], list[str]]]:
    """For each row of `effects` [m, vocab], the `n` tokens it raises most and the `n` it lowers most, as text."""

    def decoded(ids: torch.Tensor) -> list[str]:
        return [str(subject.tokenizer.decode([int(i)])) for i in ids]

    return [(decoded(row.topk(n).indices), decoded(row.topk(n, largest=False).indices)) for row in effects]


@torch.inference_mode()
def decoder_logit_tokens(subject: SubjectModel, directions: torch.Tensor, n: int,
                         chunk: int = 256) -> list[tuple[list[str], list[str]]]:
    """`top_and_bottom_tokens` of output directions [m, d_model] through the unembedding alone, `chunk` rows
    at a time (each chunk holds [chunk, vocab] logits: 256 MB for Gemma's 262k tokens)."""
    unembedding = subject.model.get_output_embeddings().weight.float()
    out: list[tuple[list[str], list[str]]] = []
    for start in range(0, len(directions), chunk):
        rows = directions[start:start + chunk].float().to(unembedding.device)
        out += top_and_bottom_tokens(subject, rows @ unembedding.T, n)
    return out


@dataclass(frozen=True)
class TokenShift:
    token: str
    change: float


@dataclass(frozen=True)
class InterventionEffect:
    promoted: list[TokenShift]
    """Tokens whose next-token logit rose most, averaged over every position of every text."""
    suppressed: list[TokenShift]
    loss_clean: float
    loss_edited: float
    mean_logit_change: torch.Tensor  # [vocab]


def _loss_and_logits(subject: SubjectModel, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = subject.model(input_ids=input_ids, use_cache=False).logits.float()  # [1, seq, vocab]
    loss = F.cross_entropy(logits[0, :-1], input_ids[0, 1:])
    return loss, logits[0, 1:]


def encode_text(subject: SubjectModel, text: str) -> torch.Tensor:
    """[1, seq] with BOS first when the tokenizer has one (the edit skips position 0)."""
    ids = subject.tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = subject.tokenizer.bos_token_id
    return torch.tensor([([bos] if bos is not None else []) + ids], device=subject.device)


@torch.inference_mode()
def feature_on_text(subject: SubjectModel, source: FeatureSource, feature: int, text: str,
                    special_ids: set[int]) -> tuple[list[str], list[float]]:
    """The feature's activation at each token of `text` (BOS first, as `encode_text` runs it), the special
    tokens left out: (tokens as text, values)."""
    input_ids = encode_text(subject, text)  # [1, seq]
    values = source.read(subject, input_ids)[0, :, feature].float().cpu().tolist()  # [seq]
    ids = input_ids[0].tolist()
    kept = [i for i, token_id in enumerate(ids) if token_id not in special_ids]
    return [str(subject.tokenizer.decode([ids[i]])) for i in kept], [values[i] for i in kept]


def token_shifts(subject: SubjectModel, change: torch.Tensor, top: int, largest: bool) -> list[TokenShift]:
    values = change.topk(top, largest=largest)
    return [TokenShift(str(subject.tokenizer.decode([int(i)])), float(v))
            for v, i in zip(values.values, values.indices, strict=True)]


@torch.inference_mode()
def measure_effect(subject: SubjectModel, source: FeatureSource, feature: Features, edit: Edit, texts: list[str],
                   top: int = 10) -> InterventionEffect:
    """How an edit changes next-token logits and loss on `texts`."""
    losses_clean, losses_edited, changes = [], [], []
    for text in texts:
        input_ids = encode_text(subject, text)
        loss_clean, logits_clean = _loss_and_logits(subject, input_ids)
        with editing(subject, source, feature, edit):
            loss_edited, logits_edited = _loss_and_logits(subject, input_ids)
        losses_clean.append(float(loss_clean))
        losses_edited.append(float(loss_edited))
        changes.append((logits_edited - logits_clean).mean(dim=0))
    mean_change = torch.stack(changes).mean(dim=0)
    return InterventionEffect(token_shifts(subject, mean_change, top, True),
                              token_shifts(subject, mean_change, top, False),
                              sum(losses_clean) / len(texts), sum(losses_edited) / len(texts), mean_change)


@torch.inference_mode()
def generate(subject: SubjectModel, prompt: str, max_new_tokens: int = 20,
             edit: tuple[FeatureSource, Features, Edit] | None = None) -> str:
    """Greedy continuation, with the edit applied at every position of every step when given."""
    input_ids = encode_text(subject, prompt)
    prompt_length = input_ids.shape[1]
    for _ in range(max_new_tokens):
        if edit is None:
            logits = subject.model(input_ids=input_ids, use_cache=False).logits
        else:
            source, feature, change = edit
            with editing(subject, source, feature, change):
                logits = subject.model(input_ids=input_ids, use_cache=False).logits
        next_id = logits[0, -1].argmax().view(1, 1)
        input_ids = torch.cat([input_ids, next_id], dim=1)
        if int(next_id) == subject.tokenizer.eos_token_id:
            break
    return str(subject.tokenizer.decode(input_ids[0, prompt_length:]))


def load_feature_source(catalog_path, ref: str, device: str = "auto") -> tuple[SubjectModel, FeatureSource, dict]:
    """The subject model and features behind a cataloged feature set, ready for experiments."""
    with Catalog(catalog_path, read_only=True) as catalog:
        feature_set = catalog.feature_set(ref)
    subject = load_subject_model(feature_set["model"], device)
    if subject.sha256 != feature_set["model_id"]:
        raise InterpError(f"model '{feature_set['model']}' is not the one feature set {feature_set['feature_set_id']} "
                          f"was cached from (its weights' sha256 differs); experiments need the same weights")
    source = resolve_features(feature_set["hook"], feature_set["source_path"] or "", subject)
    if source.sha256 is not None and source.sha256 != feature_set["source_sha256"]:
        raise InterpError(f"SAE file '{feature_set['source_path']}' changed since feature set "
                          f"{feature_set['feature_set_id']} was cached (sha256 differs)")
    return subject, source, feature_set


def check_features(source: FeatureSource, features: Features) -> None:
    for feature in [features] if isinstance(features, int) else features:
        if not 0 <= feature < source.width:
            raise InterpError(f"feature {feature} is out of range; this feature set has features "
                              f"0..{source.width - 1}")
