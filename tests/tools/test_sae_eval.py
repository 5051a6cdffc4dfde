"""SAE quality on tiny models, where the right numbers are known by construction."""

import pytest
import torch

from tools.model.hooks import HookPoint, replaced, run_to_hooks
from tools.model.subject import load_subject_model
from tools.passes.sae_eval import evaluate_sae
from tools.sae.autoencoder import SAE


@pytest.fixture(scope="module")
def subject(tiny_models):
    return load_subject_model(str(tiny_models["llama"]), device="cpu")


@pytest.fixture(scope="module")
def windows():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 40, (6, 12), generator=generator)
    ids[:, 0] = 1  # BOS
    return ids


def lossless_sae(d: int, hook: str) -> SAE:
    """relu(x), relu(-x) and back: reconstructs x exactly."""
    eye = torch.eye(d)
    return SAE(torch.cat([eye, -eye], dim=1), torch.zeros(2 * d), torch.cat([eye, -eye], dim=0), torch.zeros(d),
               activation="relu", hook=hook)


@pytest.mark.parametrize("site", ["resid_pre", "resid_post", "mlp", "attn"])
def test_identity_replacement_leaves_the_output_exactly_unchanged(subject, windows, site):
    with torch.inference_mode():
        clean = subject.model(input_ids=windows).logits
        with replaced(subject.model, HookPoint(site, 1), lambda act: act.clone()):
            same = subject.model(input_ids=windows).logits
        with replaced(subject.model, HookPoint(site, 1), lambda act: act + 1.0):
            moved = subject.model(input_ids=windows).logits
    assert torch.equal(clean, same)
    assert not torch.allclose(clean, moved)


def test_a_lossless_sae_has_zero_fvu_and_recovers_all_loss(subject, windows):
    hook = HookPoint("resid_post", 1)
    quality = evaluate_sae(subject, lossless_sae(32, hook.name), hook, windows, batch_size=4)
    x = run_to_hooks(subject.model, windows, [hook])[hook.name][:, 1:]  # real tokens: all but BOS
    assert quality.tokens == 6 * 11
    assert quality.fvu == pytest.approx(0.0, abs=1e-9)
    assert quality.loss_spliced == pytest.approx(quality.loss_clean, abs=1e-5)
    assert quality.loss_recovered == pytest.approx(1.0, abs=1e-4)
    assert quality.mean_l0 == pytest.approx(float((x != 0).sum()) / quality.tokens)
    assert quality.dead_fraction == pytest.approx(0.0)


def test_an_sae_that_outputs_nothing_is_as_bad_as_zero_ablation(subject, windows):
    hook = HookPoint("mlp", 0)
    sae = SAE(torch.randn(48, 20), -100 * torch.ones(20), torch.randn(20, 48), torch.zeros(48), activation="relu")
    quality = evaluate_sae(subject, sae, hook, windows)
    assert quality.mean_l0 == 0 and quality.dead_fraction == 1.0
    assert quality.loss_spliced == pytest.approx(quality.loss_zero_ablated, abs=1e-6)
    assert quality.loss_recovered == pytest.approx(0.0, abs=1e-6)
    assert quality.fvu > 1.0  # predicting zero is worse than predicting the mean
