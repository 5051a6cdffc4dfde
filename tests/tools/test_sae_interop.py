"""SAELens itself loads the SAEs we save, with the same maths and the same hook."""

import pytest
import torch

from tools.testing.tiny import random_sae

sae_lens = pytest.importorskip("sae_lens", reason="install the dev extra: pip install -e '.[dev]'")


@pytest.mark.parametrize("activation", ["topk", "relu", "jumprelu"])
def test_saelens_loads_our_saelens_files(tmp_path, activation):
    ours = random_sae(16, 40, "resid_post.3", seed=2)
    ours.b_enc.zero_()
    ours.activation, ours.k = activation, (5 if activation == "topk" else None)
    ours.threshold = torch.full((40,), 0.1) if activation == "jumprelu" else None
    ours.apply_b_dec_to_input = True
    ours.b_dec = torch.randn(16) * 0.1
    folder = ours.save_saelens(tmp_path / activation, hf_hook_name="model.layers.3")
    theirs = sae_lens.SAE.load_from_disk(str(folder), device="cpu")
    assert theirs.cfg.metadata.hook_name == "blocks.3.hook_resid_post"
    assert theirs.cfg.metadata.hf_hook_name == "model.layers.3"
    x = torch.randn((7, 16))
    with torch.no_grad():
        torch.testing.assert_close(theirs.encode(x), ours.encode(x))
        torch.testing.assert_close(theirs.decode(ours.encode(x)), ours.decode(ours.encode(x)))
