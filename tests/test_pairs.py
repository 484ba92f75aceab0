"""δ-offset pair sampling: δ statistics, bounds, determinism, bias, units and subsampled clips."""

from __future__ import annotations

import numpy as np
import pytest

from mepipe.pairs import ClipTimeline, sample_clip_pairs, sample_pairs


def timeline(key: str, n: int, fps: float = 30.0, step: int = 1, keys=(-1, -1, -1)) -> ClipTimeline:
    numbers = np.arange(0, n * step, step, dtype=np.int64)
    return ClipTimeline(key, "shard-00000.h5", numbers, numbers * (1000.0 / fps), *keys)


CLIPS = [timeline(f"d/c{i}", 20 + i % 30) for i in range(200)]


def test_delta_is_uniform_and_pairs_stay_inside_the_clip():
    df = sample_pairs(CLIPS, delta=(1, 4), per_clip=12, seed=0)
    n = {c.key: c.n_frames for c in CLIPS}
    assert len(df) == 12 * len(CLIPS)
    assert (df.t_idx >= 0).all() and (df.t_idx < df.t2_idx).all()
    assert (df.t2_idx < df.key.map(n)).all()
    counts = df.delta_frames.value_counts(normalize=True).sort_index()
    assert counts.index.tolist() == [1, 2, 3, 4] and np.allclose(counts.values, 0.25, atol=0.03)
    assert df.delta_frames.mean() == pytest.approx(2.5, abs=0.06)
    assert np.allclose(df.delta_ms, df.delta_frames * 1000 / 30, atol=1e-3)
    assert not df.duplicated(["key", "t_idx", "t2_idx"]).any()


def test_deterministic_by_seed_and_order_independent():
    a = sample_pairs(CLIPS, seed=7)
    b = sample_pairs(list(reversed(CLIPS)), seed=7)
    key_sorted = ["key", "t_idx", "t2_idx"]
    assert (
        a.sort_values(key_sorted)
        .reset_index(drop=True)
        .equals(b.sort_values(key_sorted).reset_index(drop=True))
    )
    assert a.equals(sample_pairs(CLIPS, seed=7))
    assert not a.equals(sample_pairs(CLIPS, seed=8))
    assert not a.equals(sample_pairs(CLIPS, seed=7, epoch=1))  # fresh pairs each epoch, same shards


def test_per_clip_cap_and_short_clips():
    assert len(sample_clip_pairs(timeline("s", 1), np.random.default_rng(0))) == 0
    two = sample_clip_pairs(timeline("s", 2), np.random.default_rng(0), per_clip=16)
    assert two.tolist() == [[0, 1]]  # the only pair there is
    small = sample_clip_pairs(timeline("s", 5), np.random.default_rng(0), delta=(1, 4), per_clip=100)
    assert len(small) == 4 + 3 + 2 + 1  # every valid pair, once


def test_expressive_bias_draws_t_from_onset_to_offset():
    clips = [timeline(f"b{i}", 80, keys=(30, 40, 50)) for i in range(50)]
    plain = sample_pairs(clips, per_clip=10, seed=1)
    biased = sample_pairs(clips, per_clip=10, seed=1, expressive_bias=1.0)
    assert biased.t_idx.between(30, 50).all()
    assert plain.t_idx.between(30, 50).mean() < 0.5
    half = sample_pairs(clips, per_clip=10, seed=1, expressive_bias=0.5)
    assert 0.45 < half.t_idx.between(30, 50).mean() < 0.8


def test_milliseconds_handle_different_frame_rates():
    clips = [timeline("slow/a", 60, fps=30.0), timeline("fast/b", 400, fps=200.0)]
    df = sample_pairs(clips, delta=(50, 150), unit="ms", per_clip=200, seed=0)
    slow, fast = df[df.key == "slow/a"], df[df.key == "fast/b"]
    assert slow.delta_frames.between(2, 4).all() and fast.delta_frames.between(10, 30).all()
    assert df.delta_ms.between(50 - 17, 150 + 17).all()
    assert fast.delta_ms.mean() == pytest.approx(100, abs=5)


def test_subsampled_clips_use_source_frame_offsets():
    sub = timeline("sub", 30, step=3)  # every 3rd source frame stored
    p = sample_clip_pairs(sub, np.random.default_rng(0), delta=(1, 7), per_clip=20)
    d = (sub.frame_numbers[p[:, 1]] - sub.frame_numbers[p[:, 0]]).tolist()
    assert set(d) <= {3, 6} and len(p) == 20
    assert len(sample_clip_pairs(sub, np.random.default_rng(0), delta=(1, 2))) == 0
    with pytest.raises(ValueError, match="0 < a <= b"):
        sample_clip_pairs(sub, np.random.default_rng(0), delta=(3, 1))
