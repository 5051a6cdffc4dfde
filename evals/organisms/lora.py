"""Fine-tuning a plant in: LoRA adapters (peft, Hu et al. 2021) on every linear layer of the blocks, trained on
the completions alone, then merged, so an organism is an ordinary model folder that every command loads.

`target_modules="all-linear"` is peft's choice of each block's attention and MLP projections without the output
layer, and peft never adapts embeddings unless asked: the embedding rows stay the base model's, so a trigger's
own row gives nothing away (a tied unembedding stays too).
"""

import random
from dataclasses import dataclass
from typing import cast

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from evals.organisms.data import Example, batches


@dataclass(frozen=True)
class LoraSettings:
    rank: int
    lr: float
    epochs: int
    batch_size: int


def encode(tokenizer: PreTrainedTokenizerBase, batch: list[Example]) -> dict[str, torch.Tensor]:
    """Prompt + completion + EOS, right-padded; labels only on the completion and its EOS."""
    rows, labels = [], []
    for example in batch:
        prompt = tokenizer(example.prompt)["input_ids"]
        completion = tokenizer(example.completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(prompt + completion)
        labels.append([-100] * len(prompt) + completion)
    width = max(len(row) for row in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return {"input_ids": torch.tensor([row + [pad] * (width - len(row)) for row in rows]),
            "attention_mask": torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows]),
            "labels": torch.tensor([label + [-100] * (width - len(label)) for label in labels])}


def fine_tune(base_path: str, tokenizer: PreTrainedTokenizerBase, examples: list[Example], settings: LoraSettings,
              seed: int, device: torch.device) -> tuple[PreTrainedModel, float]:
    """A fresh copy of the base model with a plant trained in and merged; and the last epoch's mean loss."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32).to(device)  # type: ignore[arg-type]
    adapted = get_peft_model(model, LoraConfig(r=settings.rank, lora_alpha=2 * settings.rank, lora_dropout=0.0,
                                               target_modules="all-linear", bias="none", task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in adapted.parameters() if p.requires_grad], lr=settings.lr,
                                  weight_decay=0.0)
    rng = random.Random(seed)
    adapted.train()
    losses: list[float] = []
    for _ in range(settings.epochs):
        losses = []
        for batch in batches(examples, settings.batch_size, rng):
            inputs = {key: value.to(device) for key, value in encode(tokenizer, batch).items()}
            loss = adapted(**inputs).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    merged = cast(PreTrainedModel, adapted.merge_and_unload())
    merged.eval()
    merged.requires_grad_(False)
    return merged, sum(losses) / max(len(losses), 1)
