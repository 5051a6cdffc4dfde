"""Hook names resolve on GPT-2, Llama and Gemma 3, and each reads what its name says."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from tools.errors import InterpError
from tools.model.hooks import HookPoint, hf_module_path, hook_from_external_name, hook_width, parse_hook, run_to_hooks

ARCHS = ("gpt2", "llama", "gemma3")


@pytest.fixture(scope="module")
def models(tiny_models):
    return {name: AutoModelForCausalLM.from_pretrained(tiny_models[name]).eval() for name in ARCHS}


def test_parse_accepts_our_names_and_transformerlens_names():
    assert parse_hook("mlp.2", 3) == HookPoint("mlp", 2)
    assert parse_hook("blocks.1.hook_resid_post", 3) == HookPoint("resid_post", 1)
    assert parse_hook("blocks.0.mlp.hook_post", 3) == HookPoint("mlp", 0)
    assert HookPoint("attn", 2).tl_name == "blocks.2.hook_attn_out"


@pytest.mark.parametrize("name", ["mlp.3", "mlp.9", "resid.1", "blocks.7.hook_resid_pre", "mlp"])
def test_unknown_hook_lists_the_valid_ones(name):
    with pytest.raises(InterpError, match=r"unknown hook .*valid: resid_pre\.0\.\.2, resid_post\.0\.\.2, mlp\.0\.\.2"):
        parse_hook(name, 3)


@pytest.mark.parametrize("arch", ARCHS)
def test_residual_hooks_match_hidden_states(models, arch):
    model = models[arch]
    input_ids = torch.randint(4, 30, (2, 9))
    with torch.inference_mode():
        hidden = model(input_ids=input_ids, output_hidden_states=True).hidden_states
    hooks = [HookPoint("resid_pre", 1), HookPoint("resid_post", 0), HookPoint("resid_post", 1)]
    acts = run_to_hooks(model, input_ids, hooks)
    torch.testing.assert_close(acts["resid_pre.1"], hidden[1])
    torch.testing.assert_close(acts["resid_post.0"], hidden[1])
    torch.testing.assert_close(acts["resid_post.1"], hidden[2])


@pytest.mark.parametrize("arch", ARCHS)
def test_mlp_hook_reads_the_down_projection_input(models, arch):
    """Neuron activations, recomputed from the MLP's own weights on its input."""
    model = models[arch]
    input_ids = torch.randint(4, 30, (2, 9))
    captured = {}
    mlp = (model.transformer.h if arch == "gpt2" else model.model.layers)[1].mlp
    handle = mlp.register_forward_pre_hook(lambda _m, args: captured.update(x=args[0]))
    acts = run_to_hooks(model, input_ids, [HookPoint("mlp", 1)])["mlp.1"]
    handle.remove()
    x = captured["x"]
    with torch.inference_mode():
        if arch == "gpt2":
            expected = mlp.act(mlp.c_fc(x))
        else:
            expected = mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)
    torch.testing.assert_close(acts, expected)
    assert acts.shape[-1] == hook_width(model, HookPoint("mlp", 1)) == (128 if arch == "gpt2" else 48)


@pytest.mark.parametrize("arch", ARCHS)
def test_attention_hook_reads_the_attention_output(models, arch):
    model = models[arch]
    input_ids = torch.randint(4, 30, (1, 7))
    layer = (model.transformer.h if arch == "gpt2" else model.model.layers)[0]
    attention = layer.attn if arch == "gpt2" else layer.self_attn
    captured = {}
    handle = attention.register_forward_hook(lambda _m, _a, out: captured.update(out=out[0]))
    acts = run_to_hooks(model, input_ids, [HookPoint("attn", 0), HookPoint("resid_post", 2)])
    handle.remove()
    torch.testing.assert_close(acts["attn.0"], captured["out"])
    assert acts["attn.0"].shape == (1, 7, 32)


def test_forward_stops_at_the_last_hook(models):
    model = models["llama"]
    ran = []
    handle = model.model.layers[2].register_forward_pre_hook(lambda *_: ran.append(2))
    run_to_hooks(model, torch.randint(4, 30, (1, 5)), [HookPoint("mlp", 1)])
    handle.remove()
    assert ran == []


def test_hf_module_paths_name_real_modules(models):
    assert hf_module_path(models["llama"], HookPoint("mlp", 1)) == "model.layers.1.mlp.down_proj"
    assert hf_module_path(models["gpt2"], HookPoint("attn", 0)) == "transformer.h.0.attn"
    assert hf_module_path(models["gemma3"], HookPoint("resid_post", 2)) == "model.layers.2"


@pytest.mark.parametrize("external, ours", [
    ("blocks.4.hook_resid_post", "resid_post.4"), ("model.layers.6.output", "resid_post.6"),
    ("layers.6", "resid_post.6"), ("model.language_model.layers.2.output", "resid_post.2"),
    ("model.layers.3.input", "resid_pre.3"), ("model.layers.1.mlp.down_proj.input", "mlp.1"),
    ("transformer.h.0.attn", "attn.0"), ("model.layers.5.self_attn.o_proj.output", "attn.5"),
    ("model.layers.5.pre_feedforward_layernorm.output", "mlp_in.5"), ("blocks.1.hook_z", None), ("mlp.7", "mlp.7"),
])
def test_names_from_other_tools_map_to_ours(external, ours):
    hook = hook_from_external_name(external)
    assert (hook.name if hook else None) == ours
