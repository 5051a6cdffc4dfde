"""The streaming maths against brute-force references on small random data."""

import numpy as np
import torch

from tools.data.streaming import NO_KEY, FeatureStats, KeepLargest, RandomWindows, floyd_sample, quantile_samples


def stream_batches(n_batches=7, batch=5, seq=6, features=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for index in range(n_batches):
        acts = torch.randn((batch, seq, features), generator=generator)  # [B, seq, F]
        yield torch.arange(index * batch, (index + 1) * batch), acts


def test_keep_largest_equals_brute_force_top_k():
    keeper = KeepLargest(n_features=4, size=3, length=6, device=torch.device("cpu"))
    all_acts = []
    for window_ids, acts in stream_batches():
        window_max = acts.amax(dim=1).T  # [F, B]
        keeper.update(window_max, window_max, window_ids, acts.permute(2, 0, 1))
        all_acts.append(acts)
    acts = torch.cat(all_acts)  # [N, seq, F]
    ordered = keeper.ordered()
    for feature in range(4):
        expected = acts[:, :, feature].amax(dim=1).topk(3)
        assert ordered.window_ids[feature].tolist() == expected.indices.tolist()
        assert torch.equal(ordered.maxes[feature], expected.values)
        for slot, window in enumerate(expected.indices):
            assert torch.equal(ordered.values[feature, slot], acts[window, :, feature])


def test_keep_largest_never_keeps_items_with_no_key():
    keeper = KeepLargest(n_features=2, size=4, length=3, device=torch.device("cpu"))
    acts = torch.ones((2, 2, 3))  # [F, B, seq]
    keys = torch.tensor([[0.5, NO_KEY], [NO_KEY, NO_KEY]])
    keeper.update(keys, keys, torch.tensor([10, 11]), acts)
    ordered = keeper.ordered()
    assert ordered.window_ids[0, 0] == 10
    assert (ordered.keys[0, 1:] == NO_KEY).all() and (ordered.keys[1] == NO_KEY).all()


def test_keep_largest_floor_follows_the_kept_keys_across_batches():
    keeper = KeepLargest(n_features=4, size=3, length=0, device=torch.device("cpu"))
    for window_ids, acts in stream_batches(n_batches=9, batch=2):
        keys = acts.amax(dim=1).T
        keeper.update(keys, keys, window_ids)
        assert torch.equal(keeper.floor(), keeper.keys.amin(dim=1))


def test_floyd_sample_draws_distinct_values_uniformly():
    chosen = floyd_sample(20_000, 4, 10, torch.Generator().manual_seed(0))
    assert ((chosen >= 0) & (chosen < 10)).all()
    assert (chosen.sort(dim=1).values.diff(dim=1) > 0).all()  # distinct within each row
    frequency = torch.bincount(chosen.view(-1), minlength=10) / 20_000
    assert torch.allclose(frequency, torch.full((10,), 0.4), atol=0.02)  # each value in 4 of 10 draws
    pairs = torch.bincount((chosen[:, 0] * 10 + chosen[:, 1]), minlength=100).view(10, 10)
    assert pairs.diagonal().sum() == 0 and pairs.sum() - pairs.diagonal().sum() == 20_000


def test_random_windows_hold_their_planned_windows_maxima_and_values():
    generator = torch.Generator().manual_seed(1)
    sample = RandomWindows(n_features=4, size=3, length=6, device=torch.device("cpu"), n_windows=35,
                           generator=generator)
    planned = sample.window_ids.clone()
    all_acts = []
    for window_ids, acts in stream_batches():
        sample.record(acts.amax(dim=1).T.contiguous(), window_ids, acts.permute(2, 0, 1).contiguous())
        all_acts.append(acts)
    acts = torch.cat(all_acts)  # [35, seq, F]
    assert torch.equal(sample.window_ids, planned) and (sample.keys > NO_KEY).all()
    for feature in range(4):
        windows = sample.window_ids[feature].long()
        assert len(set(windows.tolist())) == 3
        assert torch.equal(sample.maxes[feature], acts[windows, :, feature].amax(dim=1))
        assert torch.equal(sample.values[feature], acts[windows, :, feature])


def test_random_windows_keep_every_window_when_there_are_fewer_than_slots():
    sample = RandomWindows(n_features=2, size=5, length=0, device=torch.device("cpu"), n_windows=3,
                           generator=torch.Generator().manual_seed(0))
    for row in range(2):
        assert sorted(sample.window_ids[row, :3].tolist()) == [0, 1, 2]
    assert (sample.keys[:, 3:] == NO_KEY).all() and (sample.window_ids[:, 3:] == -1).all()


def test_feature_stats_match_numpy_including_histogram_after_range_growth():
    stats = FeatureStats(n_features=3, bins=8, threshold=0.0, device=torch.device("cpu"))
    chunks = []
    for scale in (0.01, 1.0, 37.0):  # forces the histogram range to double many times
        values = torch.randn(50, 3) * scale
        stats.update(values, values.T[:, :5])
        chunks.append(values)
    values = torch.cat(chunks).numpy()
    np.testing.assert_allclose(stats.max.numpy(), values.max(axis=0))
    np.testing.assert_allclose((stats.total / stats.n_tokens).numpy(), values.mean(axis=0), rtol=1e-5)
    assert stats.active.tolist() == (values > 0).sum(axis=0).tolist()
    for feature in range(3):
        top = float(stats.hist_range[feature])
        assert top >= values[:, feature].max() and top / 2 < values[:, feature].max()
        positive = values[:, feature][values[:, feature] > 0]
        expected, _ = np.histogram(positive, bins=8, range=(0, top))
        # numpy closes the last bin on the right; ours clamps the maximum into it too.
        assert stats.hist_counts[feature].tolist() == expected.tolist()


def test_quantile_samples_fall_in_their_bins_and_cover_every_quantile():
    generator = torch.Generator().manual_seed(1)
    maxes = torch.rand((3, 200), generator=generator) ** 3  # [F, M]
    keys = torch.rand((3, 200), generator=generator)
    keys[:, ::7] = NO_KEY  # inactive windows are never sampled
    keys[2] = NO_KEY  # a feature that never fired
    sample = quantile_samples(maxes, keys, n_quantiles=10, per_quantile=5)
    for feature in (0, 1):
        mine = sample.features == feature
        quantiles = sample.quantiles[mine].tolist()
        assert all(quantiles.count(q) == 5 for q in range(10)) and len(quantiles) == 50
        assert sample.ranks[mine].tolist() == list(range(50))
        for slot, quantile in zip(sample.slots[mine].tolist(), quantiles, strict=True):
            assert keys[feature, slot] > NO_KEY
            assert sample.edges[feature, quantile] <= maxes[feature, slot] <= sample.edges[feature, quantile + 1]
        # Within a quantile the random keys choose: the largest keys of that quantile's members win.
        members = [s for s in range(200) if keys[feature, s] > NO_KEY
                   and torch.searchsorted(sample.edges[feature, 1:-1], maxes[feature, s].double(), right=True) == 0]
        chosen = sample.slots[mine][sample.quantiles[mine] == 0].tolist()
        assert sorted(chosen) == sorted(sorted(members, key=lambda s: -keys[feature, s])[:5])
    assert not (sample.features == 2).any() and sample.edges[2].isnan().all()
