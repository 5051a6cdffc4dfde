"""Activation patching: run a corrupted prompt with the clean prompt's activation written in at one hook
and some positions, and measure how much of the clean behaviour comes back.

The metric is the logit difference between two answer tokens at the last position (target minus foil),
the standard choice for "which prompt's answer does the model give". Recovery is
(patched - corrupt) / (clean - corrupt): 1 means the patched site carries everything that differs, 0
nothing. A sweep patches the residual stream before every layer at every position, one site at a time.
"""

from dataclasses import dataclass

import torch

from tools.errors import InterpError
from tools.experiments.interventions import encode_text
from tools.model.hooks import HookPoint, n_layers, replaced, run_to_hooks
from tools.model.subject import SubjectModel


@dataclass(frozen=True)
class PatchResult:
    clean: float
    corrupt: float
    patched: float

    @property
    def recovery(self) -> float:
        gap = self.clean - self.corrupt
        return (self.patched - self.corrupt) / gap if abs(gap) > 1e-9 else float("nan")


@dataclass(frozen=True)
class PatchPrompts:
    """Both prompts tokenized, checked to align, and the answer tokens' ids."""

    clean_ids: torch.Tensor  # [1, seq]
    corrupt_ids: torch.Tensor  # [1, seq]
    target: int
    foil: int

    @classmethod
    def encode(cls, subject: SubjectModel, clean: str, corrupt: str, target: str, foil: str) -> "PatchPrompts":
        clean_ids, corrupt_ids = encode_text(subject, clean), encode_text(subject, corrupt)
        if clean_ids.shape != corrupt_ids.shape:
            raise InterpError(f"clean and corrupt prompts must have the same number of tokens, got "
                              f"{clean_ids.shape[1]} and {corrupt_ids.shape[1]}")
        answers = []
        for answer in (target, foil):
            ids = subject.tokenizer(answer, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                raise InterpError(f"answer {answer!r} must be one token, it is {len(ids)}")
            answers.append(ids[0])
        return cls(clean_ids, corrupt_ids, *answers)


@torch.inference_mode()
def logit_difference(subject: SubjectModel, input_ids: torch.Tensor, target: int, foil: int) -> float:
    logits = subject.model(input_ids=input_ids, use_cache=False).logits[0, -1].float()
    return float(logits[target] - logits[foil])


@torch.inference_mode()
def patch(subject: SubjectModel, prompts: PatchPrompts, hook: HookPoint, positions: list[int] | None = None,
          baseline: tuple[float, float] | None = None) -> PatchResult:
    """Patch the clean activation at `hook` into the corrupt run at `positions` (all when None)."""
    seq = prompts.clean_ids.shape[1]
    chosen = list(range(seq)) if positions is None else positions
    outside = [p for p in chosen if not 0 <= p < seq]
    if outside:
        raise InterpError(f"positions {outside} are outside the prompt (positions 0..{seq - 1}, 0 is BOS)")
    clean_act = run_to_hooks(subject.model, prompts.clean_ids, [hook])[hook.name]  # [1, seq, width]

    def write_clean(act: torch.Tensor) -> torch.Tensor:
        out = act.clone()
        out[:, chosen] = clean_act[:, chosen].to(act.dtype)
        return out

    clean, corrupt = baseline or (logit_difference(subject, prompts.clean_ids, prompts.target, prompts.foil),
                                  logit_difference(subject, prompts.corrupt_ids, prompts.target, prompts.foil))
    with replaced(subject.model, hook, write_clean):
        patched = logit_difference(subject, prompts.corrupt_ids, prompts.target, prompts.foil)
    return PatchResult(clean, corrupt, patched)


def sweep(subject: SubjectModel, prompts: PatchPrompts) -> tuple[torch.Tensor, float, float]:
    """Recovery for the residual stream before each layer at each position: [n_layers, seq], with the clean
    and corrupt metrics. One forward per site, so cost is layers x positions forwards."""
    baseline = (logit_difference(subject, prompts.clean_ids, prompts.target, prompts.foil),
                logit_difference(subject, prompts.corrupt_ids, prompts.target, prompts.foil))
    layers, seq = n_layers(subject.model), prompts.clean_ids.shape[1]
    grid = torch.full((layers, seq), float("nan"))
    for layer in range(layers):
        for position in range(seq):
            result = patch(subject, prompts, HookPoint("resid_pre", layer), [position], baseline)
            grid[layer, position] = result.recovery
    return grid, baseline[0], baseline[1]
