"""The coder half of a random-model control for an SAE or transcoder set: a coder of the same architecture
(width, TopK and k, skip connection) trained on the random copy's activations at the same hook, on as many
tokens as the set's own coder recorded training on (else the trainer's default).

Our trainers train TopK coders. A ReLU or JumpReLU coder's control is a TopK one of the same width whose k is
the set's own mean L0 on the cached corpus, the nearest architecture we train; the log says so. A trained
control coder is kept beside the catalog (`<catalog>.controls/`) and built once (tools.folders.built_once),
so a rerun reuses it and an interrupted training never looks finished.
"""

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from tools.configs import CacheConfig, TrainConfig, TranscoderTrainConfig
from tools.errors import InterpError
from tools.folders import built_once

log = logging.getLogger(__name__)


def control_folder(catalog_path: Path, source_sha256: str, random_model: str) -> Path:
    key = hashlib.sha256(f"{source_sha256}:{random_model}".encode()).hexdigest()[:16]
    return catalog_path.parent / f"{catalog_path.name}.controls" / key


def recorded_training_tokens(source: Path) -> int | None:
    """The tokens a coder we trained records in its SAELens config; None for a coder that records none."""
    config = (source if source.is_dir() else source.parent) / "cfg.json"
    if not config.exists():
        return None
    tokens = (json.loads(config.read_text()).get("metadata") or {}).get("training_tokens")
    return int(tokens) if isinstance(tokens, int) and tokens > 0 else None


def mean_l0(catalog_path: Path, set_id: str) -> float:
    from tools.catalog import Catalog

    with Catalog(catalog_path, read_only=True) as catalog:
        row = catalog.con.execute("SELECT sum(density) FROM features WHERE feature_set_id = ?", [set_id]).fetchone()
    return float(row[0] or 0.0) if row else 0.0


def trained_control_coder(feature_set: dict, config: CacheConfig, random_model: str, catalog_path: Path,
                          progress: bool) -> Path:
    """The folder of the control's coder, trained on first use; the set's own coder is at its source_path."""
    from tools.sae.formats import load_sae
    from tools.sae.transcoders import layer_of

    source = Path(feature_set["source_path"] or "")
    if not feature_set["source_path"] or not source.exists():
        raise InterpError(f"feature set {feature_set['feature_set_id']}'s coder is gone from '{source}'; the control "
                          "trains one like it, so it needs that file or folder")
    hook = feature_set["hook"]
    coder = load_sae(source, hook=hook, layer=layer_of(hook))
    finished = control_folder(Path(catalog_path), feature_set["source_sha256"], random_model) / "coder"
    if finished.exists():
        return finished
    tokens = recorded_training_tokens(source)
    k = int(coder.k or 0) if coder.activation == "topk" else max(1, round(mean_l0(catalog_path,
                                                                                  feature_set["feature_set_id"])))
    if coder.activation != "topk":
        log.info(f"the set's coder is {coder.activation}; its control is TopK with k={k}, the set's mean L0 on the "
                 "cached corpus (our trainers train TopK)")
    budget = f"{tokens:,} tokens (as the set's coder)" if tokens else "the trainer's default token budget"
    log.info(f"training the control's coder: {coder.d_sae} latents, k={k}, at {hook}, on {budget} of {random_model}")

    def train(staging: Path) -> None:
        common: dict[str, Any] = {"model": random_model, "corpus": config.corpus, "text_column": config.text_column,
                                  "window": config.window, "bos": config.bos, "seed": config.seed,
                                  "device": config.device, "dtype": config.dtype, "out": str(staging)}
        if coder.is_transcoder:
            from tools.passes.transcoder_train import run_transcoder_train

            transcoder_config = TranscoderTrainConfig(**common, layers=str(layer_of(hook)), k=k,
                                                      skip=coder.W_skip is not None)
            run_transcoder_train(dataclasses.replace(transcoder_config, tokens=tokens) if tokens
                                 else transcoder_config, progress, d_tc=coder.d_sae)
        else:
            from tools.passes.sae_train import run_sae_train

            sae_config = TrainConfig(**common, hook=hook, expansion=1, k=k)
            run_sae_train(dataclasses.replace(sae_config, tokens=tokens) if tokens else sae_config, progress,
                          d_sae=coder.d_sae)

    return built_once(finished, train)
