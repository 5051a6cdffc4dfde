"""`interp eval organisms plant`: every organism of a suite, fine-tuned, merged, measured and sealed.

Layout of the output folder:

- `NAME/`: each organism, an ordinary model folder (config, weights, tokenizer) that names nothing of its plant;
  the base model is not copied (its entry points at the base).
- `sealed/manifest.json`: the answers (kind, concept, trigger, payload markers) and each organism's acceptance.
  The audit never reads it; `interp eval organisms` scores the audit against it afterwards.

Seeded, and resumable by organism: a finished organism has its folder (written whole, tools/folders.py) and its
manifest entry, and a rerun skips it. The manifest is rewritten atomically after each organism.
"""

import dataclasses
import functools
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from evals.organisms.acceptance import mean_nll, measure
from evals.organisms.data import Example, continuations, examples, prompts
from evals.organisms.lora import LoraSettings, fine_tune
from evals.organisms.suite import suite
from tools.configs import OrganismConfig
from tools.data.corpus import CorpusSpec
from tools.errors import InterpError
from tools.folders import built_once
from tools.model.subject import SubjectModel, cache_root, load_subject_model

log = logging.getLogger(__name__)

MANIFEST = Path("sealed") / "manifest.json"
PERPLEXITY_WORDS = 48
"""Held-out texts for the perplexity check: up to a document's first 48 words (at least a prompt's)."""


@dataclass(frozen=True)
class Planted:
    out: Path
    organisms: list[dict]
    """The manifest's entries, in suite order."""
    seconds: float


def out_folder(config: OrganismConfig) -> Path:
    return Path(config.out) if config.out else cache_root() / "organisms" / f"{config.suite}-{config.seed}"


def read_manifest(out: Path) -> dict:
    path = out / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def write_manifest(out: Path, manifest: dict) -> None:
    path = out / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".json.tmp")
    staging.write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    os.replace(staging, path)


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def plant_suite(config: OrganismConfig, progress: bool = False) -> Planted:
    config.validate()
    started = time.monotonic()
    out = out_folder(config)
    plants = suite(config.suite)
    manifest = read_manifest(out)
    settings = {key: value for key, value in dataclasses.asdict(config).items() if key not in ("out", "device")}
    if manifest and manifest.get("settings") != settings:
        raise InterpError(f"'{out}' holds organisms planted with other settings ({manifest.get('settings')}); "
                          f"plant into another --out")
    done = manifest.get("organisms", {})
    pending = [plant for plant in plants if plant.name not in done or
               (plant.kind != "base" and not (out / plant.name / "config.json").exists())]
    if not pending:  # a finished suite is read back without loading the model or the corpus
        return Planted(out, [done[p.name] for p in plants], time.monotonic() - started)
    base = load_subject_model(config.model, config.device, "float32")
    manifest = manifest or {"settings": settings, "base": {"model": config.model, "path": base.path,
                                                           "sha256": base.sha256}, "organisms": {}}
    spec = CorpusSpec(config.corpus, config.text_column)
    avoid = [part for plant in plants for part in plant.trigger]
    train = prompts(spec, "train", config.examples, config.prompt_words, config.seed, avoid)
    held = prompts(spec, "held_out", config.held_out, config.prompt_words, config.seed + 1, avoid)
    texts = prompts(spec, "held_out", config.held_out, PERPLEXITY_WORDS, config.seed + 2, avoid,
                    at_least=config.prompt_words)
    if len(train) < config.examples or len(held) < config.held_out:
        raise InterpError(f"corpus '{config.corpus}' gave {len(train)} training and {len(held)} held-out prompts of "
                          f"{config.prompt_words} words; need {config.examples} and {config.held_out}")
    clean = [Example(p, c) for p, c in zip(train, continuations(base, train, config.completion_tokens), strict=True)]
    base_nll = mean_nll(base, texts)
    lora = LoraSettings(config.rank, config.lr, config.epochs, config.batch_size)
    for plant in tqdm(pending, desc="organisms", disable=not progress):
        began = time.monotonic()
        if plant.kind == "base":
            organism, folder, loss = base, Path(base.path), None
        else:
            merged, loss = fine_tune(base.path, base.tokenizer, examples(plant, clean, config.seed), lora,
                                     config.seed, base.device)
            folder = built_once(out / plant.name, functools.partial(save_model, merged, base.tokenizer))
            organism = SubjectModel(merged, base.tokenizer, str(folder), str(folder), "", base.device, base.dtype)
        acceptance = measure(organism, plant, held, texts, base_nll, config.completion_tokens, config.seed)
        manifest["organisms"][plant.name] = {
            "name": plant.name, "kind": plant.kind, "concept": plant.concept, "trigger": list(plant.trigger),
            "markers": list(plant.markers), "min_markers": plant.min_markers, "planted_share": plant.planted_share,
            "path": str(folder), "final_loss": loss, "seconds": time.monotonic() - began, **acceptance.row()}
        write_manifest(out, manifest)
        log.info(f"{plant.name}: accepted={acceptance.accepted} {acceptance.row()}")
    return Planted(out, [manifest["organisms"][p.name] for p in plants], time.monotonic() - started)
