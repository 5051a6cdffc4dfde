"""SAE formats: each written here with its exact tensor names and config keys, loaded back, and checked
against that format's own definition of encode and decode."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tools.errors import InterpError
from tools.sae.autoencoder import SAE
from tools.sae.formats import check_fits, load_sae

D_IN, D_SAE = 6, 10


@pytest.fixture
def weights():
    generator = torch.Generator().manual_seed(0)
    make = lambda *shape: torch.randn(shape, generator=generator)  # noqa: E731
    return {"W_enc": make(D_IN, D_SAE), "b_enc": make(D_SAE) * 0.1, "W_dec": make(D_SAE, D_IN),
            "b_dec": make(D_IN) * 0.5, "threshold": make(D_SAE).abs() * 0.5}


@pytest.fixture
def x():
    return torch.randn((4, 3, D_IN), generator=torch.Generator().manual_seed(1))


def reference_encode(w, x, activation, subtract_b_dec, k=None):
    """Each format's definition, written out independently of tools.sae.autoencoder."""
    pre = (x - w["b_dec"] if subtract_b_dec else x) @ w["W_enc"] + w["b_enc"]
    if activation == "relu":
        return pre.clamp(min=0)
    if activation == "jumprelu":
        return torch.where(pre > w["threshold"], pre, torch.zeros_like(pre))
    kth = pre.topk(k, dim=-1).values[..., -1:]
    return torch.where((pre >= kth) & (pre > 0), pre, torch.zeros_like(pre))


def assert_matches(sae, w, x, activation, subtract_b_dec, k=None):
    expected = reference_encode(w, x, activation, subtract_b_dec, k)
    torch.testing.assert_close(sae.encode(x), expected)
    torch.testing.assert_close(sae.decode(expected), expected @ w["W_dec"] + w["b_dec"])


def test_saelens_v6_jumprelu(tmp_path, weights, x):
    save_file({name: t.contiguous() for name, t in weights.items()}, tmp_path / "sae_weights.safetensors")
    (tmp_path / "cfg.json").write_text(json.dumps({
        "architecture": "jumprelu", "d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
        "metadata": {"model_name": "gemma-3-270m", "hook_name": "blocks.2.hook_resid_post",
                     "hook_head_index": None, "prepend_bos": True, "context_size": 1024}}))
    sae = load_sae(tmp_path)
    assert (sae.hook, sae.activation, sae.metadata["model_name"]) == ("resid_post.2", "jumprelu", "gemma-3-270m")
    assert_matches(sae, weights, x, "jumprelu", subtract_b_dec=True)


def test_saelens_flat_config_topk_without_b_dec_subtraction(tmp_path, weights, x):
    tensors = {name: weights[name].contiguous() for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    save_file(tensors, tmp_path / "sae_weights.safetensors")
    (tmp_path / "cfg.json").write_text(json.dumps({
        "d_in": D_IN, "d_sae": D_SAE, "hook_point": "blocks.1.hook_resid_pre", "hook_point_layer": 1,
        "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 3}, "apply_b_dec_to_input": False,
        "model_name": "gpt2-small"}))
    sae = load_sae(tmp_path / "sae_weights.safetensors")
    assert (sae.hook, sae.activation, sae.k) == ("resid_pre.1", "topk", 3)
    assert_matches(sae, weights, x, "topk", subtract_b_dec=False, k=3)
    assert ((sae.encode(x) != 0).sum(dim=-1) <= 3).all()


def test_gemma_scope_1_npz(tmp_path, weights, x):
    np.savez(tmp_path / "params.npz", **{name: t.numpy() for name, t in weights.items()})
    sae = load_sae(tmp_path / "params.npz", hook="resid_post.5")
    assert (sae.hook, sae.activation, sae.apply_b_dec_to_input) == ("resid_post.5", "jumprelu", False)
    assert_matches(sae, weights, x, "jumprelu", subtract_b_dec=False)


def test_gemma_scope_2_safetensors_with_lowercase_names(tmp_path, weights, x):
    save_file({name.lower(): t.contiguous() for name, t in weights.items()}, tmp_path / "params.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({
        "hf_hook_point_in": "model.layers.6.output", "hf_hook_point_out": "model.layers.6.output",
        "width": D_SAE, "model_name": "google/gemma-3-270m-pt", "architecture": "jump_relu", "l0": 40,
        "affine_connection": False, "type": "sae"}))
    sae = load_sae(tmp_path)
    assert (sae.hook, sae.activation, sae.metadata["l0"]) == ("resid_post.6", "jumprelu", 40)
    assert_matches(sae, weights, x, "jumprelu", subtract_b_dec=False)


def test_sparsify_encoder_stored_as_d_sae_by_d_in_in_bf16(tmp_path, weights, x):
    folder = tmp_path / "layers.3"
    folder.mkdir()
    bf16 = {name: weights[name].bfloat16() for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    save_file({"encoder.weight": bf16["W_enc"].T.contiguous(), "encoder.bias": bf16["b_enc"],
               "W_dec": bf16["W_dec"].contiguous(), "b_dec": bf16["b_dec"]}, folder / "sae.safetensors")
    (folder / "cfg.json").write_text(json.dumps({
        "expansion_factor": 2, "normalize_decoder": True, "num_latents": D_SAE, "k": 4, "multi_topk": False,
        "skip_connection": False, "transcode": False, "d_in": D_IN}))
    sae = load_sae(folder)
    assert (sae.hook, sae.activation, sae.k) == ("resid_post.3", "topk", 4)
    rounded = {name: t.float() for name, t in bf16.items()}
    assert_matches(sae, rounded, x, "topk", subtract_b_dec=True, k=4)


def test_our_saelens_save_loads_back_identically(tmp_path, weights, x):
    sae = SAE(weights["W_enc"], weights["b_enc"], weights["W_dec"], weights["b_dec"], activation="topk", k=2,
              hook="mlp.4", apply_b_dec_to_input=True, metadata={"model_name": "tiny"})
    loaded = load_sae(sae.save_saelens(tmp_path / "ours", hf_hook_name="model.layers.4.mlp.down_proj"))
    assert (loaded.hook, loaded.k, loaded.metadata) == ("mlp.4", 2, {"model_name": "tiny",
                                                                  "hf_hook_name": "model.layers.4.mlp.down_proj"})
    config = json.loads((tmp_path / "ours" / "cfg.json").read_text())
    assert config["architecture"] == "topk" and config["metadata"]["hook_name"] == "blocks.4.mlp.hook_post"
    torch.testing.assert_close(loaded.forward(x), sae.forward(x))


def write_saelens(folder, tensors, **config):
    folder.mkdir(exist_ok=True)
    save_file({name: t.contiguous() for name, t in tensors.items()}, folder / "sae_weights.safetensors")
    (folder / "cfg.json").write_text(json.dumps({"architecture": "standard", **config}))
    return folder


def damaged(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


def pickled_npz() -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, W_enc=np.array([{"object": "pickled"}], dtype=object))
    return buffer.getvalue()


def test_bad_sae_files_name_the_file_and_the_problem(tmp_path, weights):
    plain = {name: weights[name] for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    cases = [
        (write_saelens(tmp_path / "gated", plain, architecture="gated"), "unsupported SAE architecture 'gated'"),
        (write_saelens(tmp_path / "missing", {k: v for k, v in plain.items() if k != "b_dec"}),
         "missing tensor 'b_dec'"),
        (write_saelens(tmp_path / "square", {**plain, "W_enc": torch.zeros(D_IN, D_IN), "b_enc": torch.zeros(D_IN)}),
         "'W_enc' is square"),
        (write_saelens(tmp_path / "shape", {**plain, "W_dec": torch.zeros(3, 4)}), "'W_dec' has shape \\(3, 4\\)"),
        (write_saelens(tmp_path / "hook", plain, hook_name="blocks.1.hook_z"), "hook 'blocks.1.hook_z' is not one"),
        (write_saelens(tmp_path / "declared", plain, d_in=99, d_sae=D_SAE), "declares d_in, d_sae = \\(99, 10\\)"),
        (tmp_path / "nowhere", "does not exist"),
        (tmp_path, "holds no SAE or transcoder this tool reads"),
        (damaged(tmp_path / "damaged", {"cfg.json": b"{}", "sae_weights.safetensors": b"garbage"}),
         "not a readable safetensors file"),
        (damaged(tmp_path / "list", {"cfg.json": b"[1, 2]", "sae_weights.safetensors": b""}),
         "expected a JSON object"),
        (damaged(tmp_path / "pickled", {"params.npz": pickled_npz()}), "not a readable npz of arrays"),
    ]
    for path, message in cases:
        with pytest.raises(InterpError, match=message) as raised:
            load_sae(path)
        assert str(path) in str(raised.value) or "nowhere" in str(raised.value)


def test_width_that_does_not_match_the_hook_is_refused(tmp_path, weights):
    sae = SAE(weights["W_enc"], weights["b_enc"], weights["W_dec"], weights["b_dec"], activation="relu")
    message = "SAE input width 6 does not match hook resid_post.2 of this model \\(width 32"
    with pytest.raises(InterpError, match=message):
        check_fits(sae, 32, "resid_post.2", tmp_path / "sae")
    check_fits(sae, D_IN, "resid_post.2", tmp_path / "sae")


@pytest.mark.parametrize("activation", ["relu", "topk", "jumprelu"])
def test_the_sparse_encode_holds_exactly_the_non_zero_codes(activation):
    """What the cache pass folds from: every non-zero of `encode`, nothing else, whether or not the
    pre-activations are made in chunks (chunks change only the matmul's float rounding)."""
    generator = torch.Generator().manual_seed(0)
    sae = SAE(torch.randn((32, 64), generator=generator) / 32**0.5, torch.full((64,), -0.2),
              torch.randn((64, 32), generator=generator), torch.zeros(32), activation,
              k=5 if activation == "topk" else None,
              threshold=torch.full((64,), 0.1) if activation == "jumprelu" else None)
    x = torch.randn((50, 32), generator=generator)
    dense = sae.encode(x)
    codes = sae.encode_sparse(x)
    assert torch.equal(codes.dense(), dense) and len(codes.values) == int((dense != 0).sum())
    assert bool((codes.values != 0).all()) and bool((codes.rows[1:] >= codes.rows[:-1]).all())  # by token
    torch.testing.assert_close(sae.encode_sparse(x, chunk_elements=64 * 7).dense(), dense)
    assert sae.nonnegative
