"""Linear probes on a tiny model, on a concept planted in the text."""

import random

import pytest

from tools.errors import InterpError
from tools.experiments.probing import train_probe
from tools.features import FeatureSource, resolve_features
from tools.model.subject import load_subject_model
from tools.testing.tiny import WORDS, random_sae


@pytest.fixture(scope="module")
def subject(tiny_models):
    return load_subject_model(str(tiny_models["llama"]), device="cpu")


def texts(with_paris: bool, n: int = 20, seed: int = 0, length: int = 6) -> list[str]:
    """Random sentences of the tiny vocabulary; with_paris puts "paris" at one random place in each."""
    rng = random.Random(seed + with_paris)
    others = [w for w in WORDS if w != "paris"]
    out = []
    for _ in range(n):
        words = [rng.choice(others) for _ in range(length)]
        if with_paris:
            words[rng.randrange(length)] = "paris"
        out.append(" ".join(words))
    return out


def test_a_probe_on_embeddings_finds_a_planted_word_and_the_latent_that_writes_it(subject):
    embedding = subject.model.get_input_embeddings().weight[subject.tokenizer.convert_tokens_to_ids("paris")]
    sae = random_sae(32, 16, "resid_pre.0", seed=3)
    sae.W_dec[7] = embedding / embedding.norm() * sae.W_dec[0].norm()
    source = FeatureSource(resolve_features("resid_pre.0", "", subject).hook, "sae", 16, sae)
    result = train_probe(subject, source, texts(True), texts(False))
    assert result.accuracy >= 0.9 and result.folds == 5
    assert result.aligned[0][0] == 7 and result.aligned[0][1] > 0.5


def test_a_probe_on_a_hooks_own_dimensions_ranks_them_by_standardized_weight(subject):
    source = resolve_features("mlp.1", "", subject)
    result = train_probe(subject, source, texts(True), texts(False), top=5)
    assert 0.0 <= result.accuracy <= 1.0 and len(result.aligned) == 5
    weights = [abs(w) for _, w in result.aligned]
    assert weights == sorted(weights, reverse=True) and all(0 <= f < source.width for f, _ in result.aligned)


def test_too_few_texts_is_a_clear_error(subject):
    with pytest.raises(InterpError, match="at least 3 texts of each kind, got 2 positive and 5 negative"):
        train_probe(subject, resolve_features("mlp.1", "", subject), ["a", "b"], ["c"] * 5)
