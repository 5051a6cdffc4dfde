"""A folder built once: kept when whole, never left half-built."""

import pytest

from tools.folders import built_once


def test_a_folder_is_built_once_and_a_failed_build_leaves_nothing(tmp_path):
    target = tmp_path / "models" / "copy"
    calls = []

    def build(staging):
        calls.append(staging)
        (staging / "weights.bin").write_bytes(b"w")

    assert built_once(target, build) == target and (target / "weights.bin").read_bytes() == b"w"
    assert built_once(target, build) == target and len(calls) == 1  # kept, not rebuilt

    def broken(staging):
        (staging / "half.bin").write_bytes(b"h")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        built_once(tmp_path / "models" / "other", broken)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["copy"]
