"""Activation patching on a tiny model, where the answers are known by construction."""

import math

import pytest

from tools.errors import InterpError
from tools.experiments.patching import PatchPrompts, patch, sweep
from tools.model.hooks import HookPoint
from tools.model.subject import load_subject_model


@pytest.fixture(scope="module")
def subject(tiny_models):
    return load_subject_model(str(tiny_models["llama"]), device="cpu")


@pytest.fixture(scope="module")
def prompts(subject):
    # Only token 2 differs (position 0 is BOS): "the cat runs and" vs "the dog runs and".
    return PatchPrompts.encode(subject, "the cat runs and", "the dog runs and", "paris", "london")


def test_patching_everything_at_the_first_layer_recovers_the_clean_run(subject, prompts):
    result = patch(subject, prompts, HookPoint("resid_pre", 0))
    assert result.clean != result.corrupt
    assert result.patched == pytest.approx(result.clean, abs=1e-5) and result.recovery == pytest.approx(1.0, abs=1e-5)


def test_the_last_residual_at_the_last_position_decides_the_answer(subject, prompts):
    seq = prompts.clean_ids.shape[1]
    assert patch(subject, prompts, HookPoint("resid_post", 2), [seq - 1]).recovery == pytest.approx(1.0, abs=1e-5)


def test_patching_a_position_where_the_prompts_agree_changes_nothing(subject, prompts):
    assert patch(subject, prompts, HookPoint("resid_pre", 0), [1]).recovery == pytest.approx(0.0, abs=1e-5)


def test_sweep_finds_the_differing_token_at_the_first_layer(subject, prompts):
    grid, clean, corrupt = sweep(subject, prompts)
    assert grid.shape == (3, 5) and clean != corrupt
    assert grid[0, 2].item() == pytest.approx(1.0, abs=1e-5)  # the one token that differs
    assert all(abs(grid[0, p].item()) < 1e-5 for p in (0, 1, 3, 4))
    assert not any(math.isnan(v) for v in grid.flatten().tolist())


def test_patching_inputs_that_cannot_work_are_clear_errors(subject):
    with pytest.raises(InterpError, match="same number of tokens, got 4 and 5"):
        PatchPrompts.encode(subject, "the cat runs", "the big dog runs", "paris", "london")
    with pytest.raises(InterpError, match="answer 'paris london' must be one token, it is 2"):
        PatchPrompts.encode(subject, "the cat", "the dog", "paris london", "tokyo")
    prompts = PatchPrompts.encode(subject, "the cat", "the dog", "paris", "london")
    with pytest.raises(InterpError, match=r"positions \[7\] are outside the prompt"):
        patch(subject, prompts, HookPoint("resid_pre", 0), [7])
