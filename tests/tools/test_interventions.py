"""Ablation, clamping and steering on tiny models, where the right answers are known by construction."""

import pytest
import torch

from tools.experiments.interventions import (
    add,
    direct_logit_effect,
    edited_activation,
    generate,
    measure_effect,
    set_to,
)
from tools.features import FeatureSource
from tools.model.hooks import HookPoint, replaced, run_to_hooks
from tools.model.subject import load_subject_model
from tools.testing.tiny import random_sae

TEXTS = ["the cat runs quickly and the dog sleeps", "red blue green ( one two three )"]


@pytest.fixture(scope="module")
def subject(tiny_models):
    return load_subject_model(str(tiny_models["llama"]), device="cpu")


def sae_source(hook: HookPoint) -> FeatureSource:
    sae = random_sae(32, 64, hook.name, seed=3)
    return FeatureSource(hook, "sae", 64, sae)


def logits_with(subject, source, feature, edit, input_ids):
    with torch.inference_mode(), replaced(subject.model, source.hook, edited_activation(source, feature, edit)):
        return subject.model(input_ids=input_ids).logits


@pytest.fixture
def input_ids():
    return torch.randint(4, 40, (2, 10), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kind", ["sae", "neuron"])
def test_an_edit_that_changes_nothing_leaves_the_output_exactly_equal(subject, input_ids, kind):
    source = sae_source(HookPoint("resid_post", 1)) if kind == "sae" else FeatureSource(HookPoint("mlp", 1),
                                                                                      "neuron", 48)
    with torch.inference_mode():
        clean = subject.model(input_ids=input_ids).logits
    assert torch.equal(logits_with(subject, source, 5, lambda values: values, input_ids), clean)


def test_sae_ablation_changes_only_that_latents_contribution(subject, input_ids):
    hook = HookPoint("resid_post", 1)
    source = sae_source(hook)
    source.sae.b_enc.zero_()
    source.sae.b_enc[0] = -1e3  # latent 0 can never fire
    acts = run_to_hooks(subject.model, input_ids, [hook])[hook.name]
    latents = source.sae.encode(acts[:, 1:])
    silent, active = 0, int(latents.amax(dim=(0, 1)).argmax())
    assert latents[..., silent].max() == 0 and latents[..., active].max() > 0
    with torch.inference_mode():
        clean = subject.model(input_ids=input_ids).logits
    assert torch.equal(logits_with(subject, source, silent, set_to(0.0), input_ids), clean)
    assert not torch.allclose(logits_with(subject, source, active, set_to(0.0), input_ids), clean)
    captured = {}
    replace = edited_activation(source, active, set_to(0.0))
    captured["edited"] = replace(acts)
    expected = acts.clone()
    expected[:, 1:] -= latents[..., active, None] * source.sae.W_dec[active]
    torch.testing.assert_close(captured["edited"], expected)
    torch.testing.assert_close(captured["edited"][:, 0], acts[:, 0])  # BOS untouched


@pytest.mark.parametrize("kind", ["sae", "residual"])
def test_steering_at_the_last_layer_moves_logits_along_the_direct_logit_effect(subject, kind):
    hook = HookPoint("resid_post", 2)
    source = sae_source(hook) if kind == "sae" else FeatureSource(hook, "residual", 32)
    effect = measure_effect(subject, source, 7, add(2.0), TEXTS)
    direct = direct_logit_effect(subject, source, 7)
    correlation = torch.corrcoef(torch.stack([effect.mean_logit_change, direct]))[0, 1]
    assert correlation > 0.8, correlation
    assert effect.promoted[0].change > 0 > effect.suppressed[0].change
    top_direct = set(direct.topk(10).indices.tolist())
    promoted_ids = {subject.tokenizer.convert_tokens_to_ids(shift.token) for shift in effect.promoted}
    assert len(top_direct & promoted_ids) >= 5


def test_neuron_direct_logit_effect_uses_its_down_projection_column(subject):
    source = FeatureSource(HookPoint("mlp", 2), "neuron", 48)
    column = subject.model.model.layers[2].mlp.down_proj.weight[:, 11]
    expected = subject.model.lm_head.weight @ column
    torch.testing.assert_close(direct_logit_effect(subject, source, 11), expected)


def test_strong_steering_changes_a_greedy_generation(subject):
    source = sae_source(HookPoint("resid_post", 1))
    plain = generate(subject, "the cat", max_new_tokens=8)
    steered = generate(subject, "the cat", max_new_tokens=8, edit=(source, 7, add(50.0)))
    assert plain != steered
    assert plain == generate(subject, "the cat", max_new_tokens=8, edit=(source, 7, add(0.0)))


@pytest.mark.parametrize("kind", ["sae", "neuron"])
def test_several_features_are_set_at_once_each_to_its_own_value(subject, input_ids, kind):
    hook = HookPoint("resid_post", 1) if kind == "sae" else HookPoint("mlp", 1)
    source = sae_source(hook) if kind == "sae" else FeatureSource(hook, "neuron", 48)
    acts = run_to_hooks(subject.model, input_ids, [hook])[hook.name]
    edited = edited_activation(source, [2, 9], set_to([0.0, 1.5]))(acts)
    expected = acts.clone()
    if kind == "sae":
        latents = source.sae.encode(acts[:, 1:])
        W_dec = source.sae.W_dec
        expected[:, 1:] += (0.0 - latents[..., 2:3]) * W_dec[2] + (1.5 - latents[..., 9:10]) * W_dec[9]
    else:
        expected[:, 1:, 2], expected[:, 1:, 9] = 0.0, 1.5
    torch.testing.assert_close(edited, expected)
