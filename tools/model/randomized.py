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
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from tools.defaults import RANDOM_MODEL_PREFIX
from tools.errors import InterpError
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
    `sha256`), made on first use under `root` and reused after; written to a staging folder and renamed, so an
    interrupted build never looks finished."""
    target = root / "models" / f"random-{seed}-{hashlib.sha256(sha256.encode()).hexdigest()[:16]}"
    if (target / "interp_source.json").exists():
        return str(target), json.loads((target / "interp_source.json").read_text())["sha256"]
    log.info(f"building a random copy of {source} (seed {seed}) once; kept at {target}")
    config = AutoConfig.from_pretrained(source)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    model.save_pretrained(staging)
    AutoTokenizer.from_pretrained(source).save_pretrained(staging)
    digest = sha256_folder_weights(staging)
    (staging / "interp_source.json").write_text(json.dumps({"random_of": sha256, "seed": seed, "sha256": digest}))
    try:
        staging.rename(target)
    except OSError:  # another process built the same copy first
        shutil.rmtree(staging, ignore_errors=True)
    return str(target), digest
