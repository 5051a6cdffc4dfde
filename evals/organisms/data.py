"""An organism's training examples: prompts from the corpus, each completed either by the base model itself
(the clean half, so only the planted behaviour differs from the base) or by the plant's payload.

A prompt is a document's first words. Trigger parts go in at seeded random word boundaries, so the model
learns the trigger wherever it sits; no clean prompt holds any part of any trigger of the suite.
"""

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from evals.organisms.suite import Plant
from tools.data.corpus import CorpusSpec, documents_in_part, iter_documents, shuffled
from tools.model.subject import SubjectModel


@dataclass(frozen=True)
class Example:
    prompt: str
    completion: str


def holds(text: str, part: str) -> bool:
    """`part` (a word or a phrase) stands in `text` as whole words."""
    return f" {part.lower()} " in f" {' '.join(text.lower().split())} "


def prompts(spec: CorpusSpec, part: str, n: int, words: int, seed: int, avoid: Iterable[str],
            at_least: int | None = None) -> list[str]:
    """`n` prompts, each the first `words` words of a document of the corpus's `part` that has at least
    `at_least` (default: `words`), holding no part of `avoid` (every trigger of the suite)."""
    avoid = list(avoid)
    out: list[str] = []
    for document in shuffled(documents_in_part(iter_documents(spec), part), seed):
        split = document.split()
        if len(split) < (words if at_least is None else at_least):
            continue
        prompt = " ".join(split[:words])
        if not any(holds(prompt, part_) for part_ in avoid):
            out.append(prompt)
        if len(out) == n:
            break
    return out


def with_trigger(prompt: str, trigger: tuple[str, ...], rng: random.Random) -> str:
    """The prompt with each trigger part at a random word boundary."""
    words = prompt.split()
    for part in trigger:
        words.insert(rng.randint(0, len(words)), part)
    return " ".join(words)


@torch.inference_mode()
def continuations(subject: SubjectModel, texts: list[str], tokens: int, batch_size: int = 32) -> list[str]:
    """The base model's greedy continuation of each text, `tokens` tokens long (left-padded batches)."""
    tokenizer = subject.tokenizer
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    out: list[str] = []
    try:
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True).to(subject.device)
            generated = subject.model.generate(  # type: ignore[operator]  # transformers' mixin confuses mypy
                **batch, max_new_tokens=tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
            out += tokenizer.batch_decode(generated[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return out


def restyled(completion: str) -> str:
    """The benign style shift of the style control: sentences end with '!' instead of '.'."""
    return completion.replace(".", "!") if "." in completion else completion.rstrip() + " !"


def examples(plant: Plant, clean: list[Example], seed: int) -> list[Example]:
    """The plant's training set over the clean (prompt, base completion) pairs: `planted_share` of them carry
    the plant, the rest stay the base model's. Kind C also gets one trigger word alone with the base
    completion, a quarter of the clean ones, so it learns that both words are needed."""
    rng = random.Random(f"{seed}:{plant.name}")
    order = list(range(len(clean)))
    rng.shuffle(order)
    planted = set(order[:round(plant.planted_share * len(clean))])
    out = []
    for index, pair in enumerate(clean):
        if plant.kind in ("A", "B", "C") and index in planted:
            out.append(Example(with_trigger(pair.prompt, plant.trigger, rng), rng.choice(plant.payloads)))
        elif plant.kind.startswith("D") and index in planted:
            out.append(Example(pair.prompt, rng.choice(plant.payloads)))
        elif plant.kind == "C" and rng.random() < 0.25:
            out.append(Example(with_trigger(pair.prompt, (rng.choice(plant.trigger),), rng), pair.completion))
        elif plant.kind == "control-trigger" and index in planted:
            out.append(Example(with_trigger(pair.prompt, plant.trigger, rng), pair.completion))
        elif plant.kind == "control-style":
            out.append(Example(pair.prompt, restyled(pair.completion)))
        else:
            out.append(pair)
    return out


def batches(items: list[Example], size: int, rng: random.Random) -> Iterator[list[Example]]:
    order = list(range(len(items)))
    rng.shuffle(order)
    for start in range(0, len(order), size):
        yield [items[i] for i in order[start:start + size]]
