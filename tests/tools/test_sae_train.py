"""TopK SAE training recovers a planted dictionary, and saves something SAELens-format loaders read."""

import torch

from tools.passes.sae_train import train_topk_sae
from tools.sae.formats import load_sae

D_IN, N_ATOMS, K = 32, 48, 3


def planted_buffers(dictionary: torch.Tensor, n_buffers: int, size: int, seed: int):
    """Each sample: K random atoms with coefficients in [0.5, 1.5], plus a constant offset."""
    generator = torch.Generator().manual_seed(seed)
    offset = torch.randn(D_IN, generator=generator)
    for _ in range(n_buffers):
        atoms = torch.rand((size, N_ATOMS), generator=generator).argsort(dim=1)[:, :K]  # [size, K]
        coefficients = 0.5 + torch.rand((size, K), generator=generator)
        codes = torch.zeros((size, N_ATOMS)).scatter_(1, atoms, coefficients)
        yield codes @ dictionary + offset


def test_topk_training_recovers_the_planted_dictionary(tmp_path):
    # A seed the trainer's initialisation does not use: with the same seed it would start on the answer.
    generator = torch.Generator().manual_seed(12345)
    dictionary = torch.randn((N_ATOMS, D_IN), generator=generator)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    sae, stats = train_topk_sae(planted_buffers(dictionary, 40, 4096, seed=1), d_sae=N_ATOMS * 2, k=K,
                                total_tokens=150_000, batch_tokens=256, lr=3e-3, dead_tokens=5_000, progress=False)
    cosine = dictionary @ sae.W_dec.T  # [atoms, latents]; decoder rows are unit norm
    recovered = (cosine.max(dim=1).values > 0.9).float().mean()
    assert recovered >= 0.9, f"recovered {recovered:.0%} of atoms"
    assert stats.fvu < 0.1 and stats.tokens >= 150_000
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(N_ATOMS * 2))

    sae.hook = "resid_post.2"
    loaded = load_sae(sae.save_saelens(tmp_path / "trained"))
    x = next(planted_buffers(dictionary, 1, 16, seed=2))
    torch.testing.assert_close(loaded.encode(x), sae.encode(x))


def test_training_is_seeded():
    dictionary = torch.eye(D_IN).repeat(2, 1)[:N_ATOMS]
    runs = [train_topk_sae(planted_buffers(dictionary, 2, 2048, seed=3), d_sae=64, k=K, total_tokens=2048,
                           batch_tokens=256, seed=7, progress=False)[0] for _ in range(2)]
    assert torch.equal(runs[0].W_dec, runs[1].W_dec)
