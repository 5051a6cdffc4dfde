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


def test_one_auxk_step_lowers_what_the_dead_latents_leave_of_the_error():
    """AuxK fits target - prediction (Gao et al. 2024): after one step, the dead latents' own reconstruction is
    nearer the error the live latents left. The dead latents' weights get gradient from AuxK alone, so the error
    is held as it was before the step. The old sign (prediction - target) moves them away from it."""
    from tools.passes.sae_train import Schedule, TopKTrainer, decode_sparse
    from tools.sae.autoencoder import SAE

    generator = torch.Generator().manual_seed(5)
    d_in, d_sae, k = 16, 32, 2
    W_dec = torch.randn((d_sae, d_in), generator=generator)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    coder = SAE(torch.randn((d_in, d_sae), generator=generator) * 0.3, torch.zeros(d_sae), W_dec, torch.zeros(d_in),
                "topk", k=k)
    coder.b_enc[:16] = 10.0  # the live latents win every top-k slot
    coder.b_enc[16:] = 1.0  # the dead ones: positive pre-activations for AuxK to use, small beside the error
    x, target = torch.randn((256, d_in), generator=generator), torch.randn((256, d_in), generator=generator)
    trainer = TopKTrainer(coder, Schedule(1e-2, total_steps=100, warmup=0.0), auxk_alpha=1.0, dead_tokens=1)
    trainer.since_fired[16:] = 10
    dead = torch.arange(d_sae) >= 16
    with torch.no_grad():
        live = coder.pre_activations(x).topk(k, dim=-1)
        missed = target - decode_sparse(coder.W_dec, live.indices, torch.relu(live.values)) - coder.b_dec

    def left_over() -> float:
        with torch.no_grad():
            aux = coder.pre_activations(x).masked_fill(~dead, float("-inf")).topk(d_in // 2, dim=-1)
            return float((missed - decode_sparse(coder.W_dec, aux.indices, torch.relu(aux.values))).pow(2).sum())

    before = left_over()
    trainer.step(x, target)
    assert left_over() < 0.99 * before
