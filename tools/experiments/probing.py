"""Linear probes: does a hook's activation tell two sets of texts apart, and which features point the same
way as the probe?

Each text becomes the mean of its activation over real tokens at the hook (BOS and padding left out). A
logistic regression (scikit-learn, standardized inputs) is fitted and its accuracy measured by
stratified cross-validation, so the number is held-out. The direction is refitted on all texts; for a
feature set of the hook's own dimensions the aligned features are the largest standardized weights, for
an SAE the latents whose decoder direction has the highest cosine with the probe direction.
"""

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from tools.data.windows import content_mask
from tools.errors import InterpError
from tools.experiments.interventions import encode_text
from tools.features import FeatureSource
from tools.model.hooks import run_to_hooks
from tools.model.subject import SubjectModel

MIN_PER_CLASS = 3


@dataclass(frozen=True)
class ProbeResult:
    accuracy: float
    """Mean held-out accuracy over the cross-validation folds."""
    folds: int
    aligned: list[tuple[int, float]]
    """(feature, alignment) of the features most aligned with the probe, strongest first; the sign says
    whether the feature points towards the positive texts."""


@torch.inference_mode()
def pooled_activations(subject: SubjectModel, source: FeatureSource, texts: list[str],
                       edit: Callable[[], AbstractContextManager] | None = None) -> np.ndarray:
    """[len(texts), hook width]: each text's mean activation over its real tokens; with `edit` (a context the
    forward runs in, like `interventions.editing`), under that intervention upstream."""
    rows = []
    for text in texts:
        input_ids = encode_text(subject, text)  # [1, seq]
        with edit() if edit else nullcontext():
            acts = run_to_hooks(subject.model, input_ids, [source.hook])[source.hook.name][0].float()  # [seq, width]
        mask = content_mask(input_ids, subject.tokenizer)[0]
        if not mask.any():
            raise InterpError(f"text {text!r} has no tokens to probe")
        rows.append(acts[mask].mean(dim=0).cpu().numpy())
    return np.stack(rows)


def train_probe(subject: SubjectModel, source: FeatureSource, positive: list[str], negative: list[str],
                top: int = 10) -> ProbeResult:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(positive) < MIN_PER_CLASS or len(negative) < MIN_PER_CLASS:
        raise InterpError(f"a probe needs at least {MIN_PER_CLASS} texts of each kind, got {len(positive)} "
                          f"positive and {len(negative)} negative")
    x = pooled_activations(subject, source, positive + negative)  # [n, width]
    y = np.array([1] * len(positive) + [0] * len(negative))
    folds = min(5, len(positive), len(negative))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    accuracy = cross_val_score(model, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=0)).mean()
    model.fit(x, y)
    scaler, logistic = model[0], model[1]
    weight = logistic.coef_[0] / np.where(scaler.scale_ > 0, scaler.scale_, 1.0)  # direction in activation space
    if source.sae is None:
        alignment = logistic.coef_[0]  # standardized weights: comparable across dimensions
    else:
        decoder = source.sae.W_dec.float().cpu().numpy()  # [d_sae, d_in]
        norms = np.linalg.norm(decoder, axis=1) * np.linalg.norm(weight)
        alignment = decoder @ weight / np.where(norms > 0, norms, 1.0)
    order = np.argsort(-np.abs(alignment))[:top]
    return ProbeResult(float(accuracy), folds, [(int(i), float(alignment[i])) for i in order])
