"""A randomly initialized copy of a subject model: the control that tells a score earned by training from one
any network would get (Heap et al. 2025, "Automated Interpretability Metrics Do Not Distinguish Trained and
Random Transformers", arXiv 2501.17727).

`random:SEED:SPEC` names it wherever a model is named. The copy has SPEC's architecture, config and tokenizer,
and weights drawn by transformers' own initializer for that architecture (the one training starts from; norms
at their initial values) under `torch.manual_seed(SEED)`. It is materialized once as an ordinary model folder
beside the dequantized models, so caching, labeling and steering load it as they load any folder, and its
weights' digest, not its recipe, is what the catalog records.
"""

import hashlib
import json
import logging
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from tools.defaults import RANDOM_MODEL_PREFIX
from tools.errors import InterpError
from tools.folders import built_once
from tools.model.digests import sha256_folder_weights

log = logging.getLogger(__name__)


def random_spec(spec: str, seed: int) -> str:
    return f"{RANDOM_MODEL_PREFIX}{seed}:{spec}"


def parse_random_spec(spec: str) -> tuple[int, str] | None:
    """(seed, the trained model's spec) of `random:SEED:SPEC`; None for any other spec."""
    if not spec.startswith(RANDOM_MODEL_PREFIX):
        return None
    seed, _, base = spec[len(RANDOM_MODEL_PREFIX):].partition(":")
    if not seed.isdigit() or not base:
        raise InterpError(f"model '{spec}' is not random:SEED:MODEL (like random:0:gemma-3-270m)")
    return int(seed), base


def randomized_folder(source: str, sha256: str, seed: int, root: Path) -> tuple[str, str]:
    """(folder, weights' sha256) of the seeded random copy of the model in folder `source` (whose weights have
    `sha256`), made once under `root` (tools.folders.built_once) and reused after."""
    target = root / "models" / f"random-{seed}-{hashlib.sha256(sha256.encode()).hexdigest()[:16]}"

    def build(staging: Path) -> None:
        log.info(f"building a random copy of {source} (seed {seed}) once; kept at {target}")
        config = AutoConfig.from_pretrained(source)
        torch.manual_seed(seed)
        AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(staging)
        AutoTokenizer.from_pretrained(source).save_pretrained(staging)
        digest = sha256_folder_weights(staging)
        (staging / "interp_source.json").write_text(json.dumps({"random_of": sha256, "seed": seed, "sha256": digest}))

    built_once(target, build)
    return str(target), json.loads((target / "interp_source.json").read_text())["sha256"]
