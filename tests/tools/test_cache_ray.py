"""`interp cache --ray`: two Ray workers write exactly the catalog one process writes (tiny model, small corpus),
a worker that dies mid-shard is retried with the same result, and --ray without Ray is one line."""

import dataclasses
import sys

import duckdb
import numpy as np
import pytest

from agent.cli import main
from tools.configs import CacheConfig
from tools.passes.cache import run_cache
from tools.testing.tiny import random_sae

ray = pytest.importorskip("ray", reason="the ray extra is not installed")
IGNORED = {"run_id", "feature_set_id", "created_at"}


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A local Ray cluster of 2 CPUs for the module; workers see the fault-injection marker variable."""
    from tools.ray_workers import KILL_MARKER

    marker = tmp_path_factory.mktemp("ray") / "killed"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {KILL_MARKER: str(marker)}})
    marker.touch()  # no kill unless a test removes it
    yield marker
    ray.shutdown()


def table(path, name: str, order: str) -> list[dict]:
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(f"SELECT * FROM {name} ORDER BY {order}").fetchall()
        columns = [c[0] for c in con.description]
    return [{k: v for k, v in zip(columns, row, strict=True) if k not in IGNORED} for row in rows]


def assert_same_catalog(single, distributed) -> None:
    for name, order in (("examples", "feature, bucket, rank"), ("windows", "window_id")):
        assert table(single, name, order) == table(distributed, name, order), name
    ones, ours = table(single, "features", "feature"), table(distributed, "features", "feature")
    assert len(ones) == len(ours)
    for one, our in zip(ones, ours, strict=True):
        # Sums of activations are added in another order: equal to the last bits, not bit for bit.
        assert one.pop("mean_act") == pytest.approx(our.pop("mean_act"), rel=1e-9, abs=1e-12)
        assert one == our


def configs(tiny_models, text_corpus, tmp_path) -> list[CacheConfig]:
    sae = random_sae(32, 64, "resid_post.1")
    sae.b_enc.fill_(-0.05)
    sae.save_saelens(tmp_path / "sae")
    dense = CacheConfig(model=str(tiny_models["gpt2"]), corpus=str(text_corpus), hook="mlp.1", tokens=3000, window=16,
                        batch_size=8, top_k=5, quantiles=4, per_quantile=2, random=8, device="cpu")
    return [dense, dataclasses.replace(dense, hook="", sae=str(tmp_path / "sae"))]


def test_two_ray_workers_write_the_catalog_one_process_writes(ray_cluster, tiny_models, text_corpus, tmp_path):
    from tools.ray_workers import RaySettings

    for number, config in enumerate(configs(tiny_models, text_corpus, tmp_path)):
        single, distributed = tmp_path / f"one-{number}.duckdb", tmp_path / f"ray-{number}.duckdb"
        run_cache(config, single, progress=False)
        run_cache(config, distributed, progress=False, ray=RaySettings("auto", workers=2))
        assert_same_catalog(single, distributed)
        assert not list((tmp_path / f"ray-{number}.duckdb.runs").glob("*.shard-*"))  # shard states cleaned up


def test_a_worker_killed_mid_shard_is_retried_with_the_same_result(ray_cluster, tiny_models, text_corpus, tmp_path):
    from tools.ray_workers import RaySettings

    config = configs(tiny_models, text_corpus, tmp_path)[0]
    run_cache(config, tmp_path / "one.duckdb", progress=False)
    ray_cluster.unlink()  # the next worker to fold a batch dies
    run_cache(config, tmp_path / "ray.duckdb", progress=False, ray=RaySettings("auto", workers=2))
    assert ray_cluster.exists()  # a worker did die
    assert_same_catalog(tmp_path / "one.duckdb", tmp_path / "ray.duckdb")


def test_ray_missing_is_one_line(tiny_models, text_corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert main(["cache", "--model", str(tiny_models["gpt2"]), "--corpus", str(text_corpus), "--tokens", "500",
                 "--ray", "--catalog", str(tmp_path / "c.duckdb"), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.strip() == "error: --ray needs Ray, an optional extra: pip install -e '.[ray]'"


def test_shards_cover_every_batch_once():
    from tools.passes.cache_ray import shard_ranges

    for n_batches in (1, 7, 8, 100):
        for n_shards in (1, 3, 8, 200):
            covered = np.concatenate([np.arange(a, b) for a, b in shard_ranges(n_batches, n_shards)])
            assert covered.tolist() == list(range(n_batches))


def test_a_failed_ray_run_resumes_from_its_finished_shards(ray_cluster, tiny_models, text_corpus, tmp_path,
                                                           monkeypatch):
    from tools.passes import cache as cache_pass
    from tools.ray_workers import RaySettings

    config = configs(tiny_models, text_corpus, tmp_path)[0]
    run_cache(config, tmp_path / "one.duckdb", progress=False)
    build_rows = cache_pass.build_rows

    def broken(*args, **kwargs):
        raise RuntimeError("the disk filled up")

    monkeypatch.setattr(cache_pass, "build_rows", broken)
    with pytest.raises(RuntimeError, match="disk filled up"):
        run_cache(config, tmp_path / "ray.duckdb", progress=False, ray=RaySettings("auto", workers=2))
    assert len(list((tmp_path / "ray.duckdb.runs").glob("*.shard-*.pt"))) == 2
    monkeypatch.setattr(cache_pass, "build_rows", build_rows)
    ray_cluster.unlink()  # any shard folded again would kill its worker and leave the marker behind
    result = run_cache(config, tmp_path / "ray.duckdb", progress=False, ray=RaySettings("auto", workers=2))
    assert not ray_cluster.exists()  # nothing was folded again: both shards came from their files
    ray_cluster.touch()
    assert result.resumed and not result.already_done
    assert_same_catalog(tmp_path / "one.duckdb", tmp_path / "ray.duckdb")
