"""The caching pass end to end on tiny models, checked against brute force."""

import dataclasses
import json

import duckdb
import pytest
import torch

from tools.data.windows import content_mask
from tools.features import FeatureSource
from tools.model.hooks import parse_hook, run_to_hooks
from tools.model.subject import load_subject_model
from tools.passes.cache import CacheConfig, prepare_windows, run_cache
from tools.testing.tiny import random_sae

SMALL = dict(hook="mlp.1", tokens=2000, window=16, batch_size=8, top_k=5, quantiles=4, per_quantile=2, random=3,
             checkpoint_seconds=0.0)


def config_for(model_dir, corpus, **overrides) -> CacheConfig:
    return CacheConfig(model=str(model_dir), corpus=str(corpus), **{**SMALL, **overrides})


def all_activations(config: CacheConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Every window's activations at once [N, seq, F], special tokens zeroed, and the mask."""
    subject = load_subject_model(config.model)
    windows = prepare_windows(config, subject)
    hook = parse_hook(config.hook, 3)
    acts = run_to_hooks(subject.model, windows, [hook])[hook.name]
    mask = content_mask(windows, subject.tokenizer)
    return acts.masked_fill(~mask[:, :, None], 0.0), mask


def rows(catalog, sql, *params):
    with duckdb.connect(str(catalog), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


@pytest.mark.parametrize("arch, hook", [("gpt2", "mlp.1"), ("gemma3", "resid_post.2"), ("llama", "attn.0")])
def test_top_examples_and_stats_equal_brute_force(tmp_path, tiny_models, text_corpus, arch, hook):
    config = config_for(tiny_models[arch], text_corpus, hook=hook)
    result = run_cache(config, tmp_path / "c.duckdb", progress=False)
    acts, mask = all_activations(config)  # [N, seq, F]
    window_max = acts.masked_fill(~mask[:, :, None], float("-inf")).amax(dim=1)  # [N, F]
    top = rows(tmp_path / "c.duckdb", "SELECT feature, rank, window_id, max_act, acts FROM examples "
               "WHERE feature_set_id = ? AND bucket = 'top' ORDER BY feature, rank", result.feature_set_id)
    n_features = acts.shape[-1]
    assert len(top) == n_features * config.top_k
    for feature, rank, window_id, max_act, token_acts in top:
        # Windows can tie (same prefix up to the peak), so compare values, then check the window holds it.
        expected = window_max[:, feature].topk(config.top_k).values[rank]
        assert max_act == pytest.approx(float(expected), abs=1e-5)
        assert float(window_max[window_id, feature]) == pytest.approx(max_act, abs=1e-5)
        torch.testing.assert_close(torch.tensor(token_acts), acts[window_id, :, feature])
    stats = rows(tmp_path / "c.duckdb", "SELECT max_act, mean_act, density FROM features ORDER BY feature")
    real = acts[mask]  # [tokens, F]
    torch.testing.assert_close(torch.tensor([s[0] for s in stats]), real.amax(dim=0))
    torch.testing.assert_close(torch.tensor([s[1] for s in stats], dtype=torch.float32), real.mean(dim=0),
                               atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.tensor([s[2] for s in stats], dtype=torch.float32),
                               (real > 0).float().mean(dim=0))


def test_quantile_and_random_examples(tmp_path, tiny_models, text_corpus):
    config = config_for(tiny_models["gpt2"], text_corpus)
    result = run_cache(config, tmp_path / "c.duckdb", progress=False)
    catalog = tmp_path / "c.duckdb"
    quantiles = rows(catalog, "SELECT e.quantile, e.max_act, f.quantile_edges FROM examples e JOIN features f "
                     "USING (feature_set_id, feature) WHERE bucket = 'quantile'")
    assert quantiles
    for quantile, max_act, edges in quantiles:
        assert edges[quantile] - 1e-6 <= max_act <= edges[quantile + 1] + 1e-6
    per_feature = rows(catalog, "SELECT feature, count(*), count(DISTINCT quantile) FROM examples "
                       "WHERE bucket = 'quantile' GROUP BY feature")
    assert all(n == config.quantiles * config.per_quantile and q == config.quantiles for _, n, q in per_feature)
    random = rows(catalog, "SELECT feature, count(DISTINCT window_id) FROM examples WHERE bucket = 'random' "
                  "GROUP BY feature")
    assert len(random) == 128 and all(n == config.random for _, n in random)
    splits = rows(catalog, "SELECT split, count(*) FROM examples WHERE bucket = 'top' GROUP BY split ORDER BY split")
    assert splits == [("explain", 128 * 3), ("score", 128 * 2)]
    assert result.tokens == rows(catalog, "SELECT tokens FROM feature_sets")[0][0]


def test_every_row_traces_to_its_run(tmp_path, tiny_models, text_corpus):
    config = config_for(tiny_models["llama"], text_corpus)
    result = run_cache(config, tmp_path / "c.duckdb", progress=False)
    catalog = tmp_path / "c.duckdb"
    for table in ("models", "feature_sets", "features", "windows", "examples"):
        assert rows(catalog, f"SELECT DISTINCT run_id FROM {table}") == [(result.run_id,)]
    status, stored_config, corpus, versions, model_id, tokens = rows(
        catalog, "SELECT status, config, corpus, package_versions, model_id, tokens FROM runs")[0]
    assert status == "complete" and tokens == result.tokens
    assert json.loads(stored_config) == dataclasses.asdict(config)
    assert json.loads(corpus)["sha256"] and "torch" in json.loads(versions)
    assert len(model_id) == 64
    assert rows(catalog, "SELECT path FROM models")[0][0] == str(tiny_models["llama"])


def test_rerun_of_a_finished_run_does_nothing(tmp_path, tiny_models, text_corpus):
    config = config_for(tiny_models["gpt2"], text_corpus)
    first = run_cache(config, tmp_path / "c.duckdb", progress=False)
    second = run_cache(config, tmp_path / "c.duckdb", progress=False)
    assert second.already_done and second.feature_set_id == first.feature_set_id
    assert rows(tmp_path / "c.duckdb", "SELECT count(*) FROM feature_sets") == [(1,)]


def crash_on_fourth_batch(monkeypatch, method: str):
    """FeatureSource.`method` raises on its fourth call, as a crash mid-pass; returns what undoes it."""
    real = getattr(FeatureSource, method)
    calls = {"n": 0}

    def crashing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated crash")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(FeatureSource, method, crashing)
    return lambda: monkeypatch.setattr(FeatureSource, method, real)


def test_resume_after_crash_matches_an_uninterrupted_run(tmp_path, tiny_models, text_corpus, monkeypatch):
    config = config_for(tiny_models["gpt2"], text_corpus)
    reference = run_cache(config, tmp_path / "ref.duckdb", progress=False)

    restore = crash_on_fourth_batch(monkeypatch, "read")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_cache(config, tmp_path / "c.duckdb", progress=False)
    catalog = tmp_path / "c.duckdb"
    assert rows(catalog, "SELECT count(*) FROM feature_sets") == [(0,)]
    assert rows(catalog, "SELECT status, error FROM runs") == [("failed", "RuntimeError: simulated crash")]

    restore()
    resumed = run_cache(config, catalog, progress=False)
    assert resumed.resumed and resumed.feature_set_id == reference.feature_set_id
    query = ("SELECT feature, bucket, rank, quantile, split, window_id, max_act, acts FROM examples "
             "ORDER BY feature, bucket, rank")
    assert rows(catalog, query) == rows(tmp_path / "ref.duckdb", query)
    stats_query = "SELECT * EXCLUDE (run_id) FROM features ORDER BY feature"
    assert rows(catalog, stats_query) == rows(tmp_path / "ref.duckdb", stats_query)
    assert not list((tmp_path / "c.duckdb.runs").glob("*.pt"))


def test_sae_latents_are_cached_like_neurons(tmp_path, tiny_models, text_corpus):
    sae = random_sae(32, 64, "resid_post.1")
    folder = sae.save_saelens(tmp_path / "sae")
    config = config_for(tiny_models["gemma3"], text_corpus, hook="", sae=str(folder))
    result = run_cache(config, tmp_path / "c.duckdb", progress=False)
    catalog = tmp_path / "c.duckdb"
    kind, hook, n_features, source_path, source_sha = rows(
        catalog, "SELECT kind, hook, n_features, source_path, source_sha256 FROM feature_sets")[0]
    assert (kind, hook, n_features, source_path) == ("sae", "resid_post.1", 64, str(folder.resolve()))
    assert len(source_sha) == 64 and result.feature_set_id.startswith("resid_post.1-sae-")

    hook_acts, mask = all_activations(config_for(tiny_models["gemma3"], text_corpus, hook="resid_post.1"))
    latents = sae.encode(hook_acts).masked_fill(~mask[:, :, None], 0.0)  # [N, seq, 64]
    window_max = latents.masked_fill(~mask[:, :, None], float("-inf")).amax(dim=1)
    top = rows(catalog, "SELECT feature, rank, window_id, max_act, acts FROM examples WHERE bucket = 'top'")
    assert len(top) == 64 * config.top_k
    for feature, rank, window_id, max_act, token_acts in top:
        assert max_act == pytest.approx(float(window_max[:, feature].topk(config.top_k).values[rank]), abs=1e-5)
        torch.testing.assert_close(torch.tensor(token_acts), latents[window_id, :, feature])
    density = rows(catalog, "SELECT avg(density) FROM features")[0][0]
    assert 0 < density < 0.5  # latents are sparse, unlike the hook's dense dimensions


class RunsCode:
    """Unpickling this would run a shell command, as a crafted checkpoint could."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_crafted_resume_checkpoint_is_refused_and_runs_nothing(tmp_path):
    from tools.errors import InterpError
    from tools.passes.cache_state import load_checkpoint

    marker, checkpoint = tmp_path / "pwned", tmp_path / "run.pt"
    torch.save({"next_batch": 1, "top": RunsCode(marker)}, checkpoint)
    with pytest.raises(InterpError, match="resume checkpoint .* is unreadable"):
        load_checkpoint(checkpoint, torch.device("cpu"))
    assert not marker.exists()


def test_a_checkpoint_of_another_state_layout_is_refused():
    """A checkpoint from before the random negatives were planned would resume into a mixed sample."""
    from tools.passes.cache_state import CacheState

    config = CacheConfig(hook="mlp.1", **{k: v for k, v in SMALL.items() if k != "hook"})
    older = CacheState(config, 4, 10, torch.device("cpu")).state_dict()
    del older["layout"]
    with pytest.raises(ValueError, match="another layout"):
        CacheState(config, 4, 10, torch.device("cpu")).load_state_dict(older)


def sae_config(tmp_path, tiny_models, text_corpus, activation: str) -> CacheConfig:
    from tools.sae.autoencoder import SAE

    base = random_sae(32, 64, "resid_post.1", seed=5)
    sae = SAE(base.W_enc, base.b_enc.fill_(-0.05), base.W_dec, base.b_dec, activation, hook="resid_post.1",
              k=4 if activation == "topk" else None,
              threshold=torch.full((64,), 0.02) if activation == "jumprelu" else None)
    folder = sae.save_saelens(tmp_path / f"sae-{activation}")
    return config_for(tiny_models["llama"], text_corpus, hook="", sae=str(folder), tokens=3000)


CATALOG_QUERIES = {
    "examples": "SELECT feature, bucket, rank, quantile, split, window_id, max_act, acts FROM examples "
                "ORDER BY feature, bucket, rank",
    "features": "SELECT * EXCLUDE (run_id) FROM features ORDER BY feature",
    "windows": "SELECT * EXCLUDE (run_id) FROM windows ORDER BY window_id",
}


@pytest.mark.parametrize("activation", ["relu", "topk", "jumprelu"])
def test_the_sparse_fold_of_sae_latents_writes_the_catalog_the_dense_fold_writes(tmp_path, tiny_models, text_corpus,
                                                                                  monkeypatch, activation):
    """SAE latents are folded from their non-zero codes, slots keep window ids only and the values come from
    the windows' codes at the end; examples, splits, windows and statistics are exactly the dense fold's."""
    config = sae_config(tmp_path, tiny_models, text_corpus, activation)
    monkeypatch.setattr("tools.passes.cache.FEATURE_CHUNK", 24)  # examples built and written in 3 chunks
    sparse = run_cache(config, tmp_path / "sparse.duckdb", progress=False)
    monkeypatch.setattr("tools.passes.cache.FEATURE_CHUNK", 1 << 15)
    monkeypatch.setattr(FeatureSource, "sparse", property(lambda self: False))
    dense = run_cache(config, tmp_path / "dense.duckdb", progress=False)
    assert sparse.feature_set_id == dense.feature_set_id
    for name, query in CATALOG_QUERIES.items():
        got, want = rows(tmp_path / "sparse.duckdb", query), rows(tmp_path / "dense.duckdb", query)
        assert len(got) == len(want) > 0 and got == want, name
    assert rows(tmp_path / "sparse.duckdb", "SELECT count(*) FROM examples WHERE bucket = 'quantile'")[0][0] > 0
    # A latent's top examples are windows where it fires, however few: never windows where it is 0.
    per_feature = rows(tmp_path / "sparse.duckdb", "SELECT f.feature, count(e.feature), min(e.max_act), "
                       "round(f.window_density * fs.n_windows) FROM features f JOIN feature_sets fs USING "
                       "(feature_set_id) LEFT JOIN examples e ON e.feature = f.feature AND e.bucket = 'top' "
                       "GROUP BY ALL")
    assert all(count == min(config.top_k, active) for _, count, _, active in per_feature)
    assert all(low is None or low > 0 for _, _, low, _ in per_feature)
    assert any(count < config.top_k for _, count, _, _ in per_feature)


def test_a_sparse_run_resumes_from_its_checkpoint_with_the_codes(tmp_path, tiny_models, text_corpus, monkeypatch):
    config = sae_config(tmp_path, tiny_models, text_corpus, "topk")
    run_cache(config, tmp_path / "ref.duckdb", progress=False)
    restore = crash_on_fourth_batch(monkeypatch, "read_sparse")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_cache(config, tmp_path / "c.duckdb", progress=False)
    restore()
    assert run_cache(config, tmp_path / "c.duckdb", progress=False).resumed
    for name, query in CATALOG_QUERIES.items():
        assert rows(tmp_path / "c.duckdb", query) == rows(tmp_path / "ref.duckdb", query), name
