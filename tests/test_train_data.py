"""mepipe.train data layer: pair sampling bounds, determinism, lazy shard access, augmentation."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from mepipe.errors import ConfigError
from mepipe.labels import LabelScheme
from mepipe.pairs import ClipTimeline, sample_pairs
from mepipe.train.augment import augment_pairs, prepare_pairs
from mepipe.train.config import AugmentConfig
from mepipe.train.data import PairDataset, PairSampler, delta_pairs, epoch_rng, keyframe_pairs, make_loader
from mepipe.train.frames import ClipInfo, frame_size, load_clips
from mepipe.train.runtime import cpu_threads
from tests.toy import write_toy_build


@pytest.fixture(autouse=True)
def _one_thread():
    """Small models on a busy 2-core machine run far faster single-threaded (restored afterwards)."""
    with cpu_threads(1):
        yield


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_build(
        tmp_path_factory.mktemp("data") / "micro",
        subjects=2,
        clips_per_subject=3,
        n_frames=9,
        size=32,
        max_clips=4,
    )


def _clips(lengths: list[int]) -> list[ClipInfo]:
    return [ClipInfo(f"d/c{i}", "x.h5", "d", "s", n, 0, n // 2) for i, n in enumerate(lengths)]


def _timelines(clips: list[ClipInfo], fps: float = 30.0, step: int = 1) -> list[ClipTimeline]:
    """Timelines of clips whose stored frames are every ``step``-th source frame at ``fps``."""
    out = []
    for c in clips:
        fn = np.arange(c.n_frames, dtype=np.int64) * step
        out.append(ClipTimeline(c.key, c.shard, fn, fn * (1000.0 / fps), c.onset_idx, c.apex_idx))
    return out


@pytest.mark.parametrize("delta", [(1, 1), (1, 4), (2, 8), (4, 16)])
def test_delta_pairs_never_cross_clip_bounds(delta: tuple[int, int]) -> None:
    clips = _clips([1, 2, 3, 5, 8, 17, 40])
    tl = _timelines(clips)
    for epoch in range(20):
        pairs = delta_pairs(tl, delta, 8, seed=0, epoch=epoch)
        assert len(set(pairs)) == len(pairs)  # no duplicate pair
        for ci, t, t2 in pairs:
            n = clips[ci].n_frames
            assert 0 <= t < t2 <= n - 1
            assert delta[0] <= t2 - t <= delta[1]
    # a clip shorter than a + 1 frames cannot hold a pair and is skipped
    used = {ci for ci, _, _ in delta_pairs(tl, (4, 16), 8)}
    assert used == {i for i, c in enumerate(clips) if c.n_frames - 1 >= 4}


def test_delta_is_uniform_and_redrawn_each_epoch() -> None:
    clips = _clips([100] * 200)
    deltas = [t2 - t for _, t, t2 in delta_pairs(_timelines(clips), (1, 4), 20, seed=0, epoch=0)]
    counts = np.bincount(deltas, minlength=5)[1:]
    assert len(deltas) == 4000 and counts.min() > 900  # ~1000 each
    s = PairSampler(clips[:1], delta=(1, 4), pairs_per_clip=16, seed=3, timelines=_timelines(clips[:1]))
    s.set_epoch(0)
    e0 = list(s)
    s.set_epoch(1)
    assert list(s) != e0
    s.set_epoch(0)
    assert list(s) == e0  # a function of (seed, epoch) only: identical on resume and on every rank


def test_trainer_pairs_are_the_build_pair_table() -> None:
    """One δ sampler: the trainer's epoch-e pairs are `mepipe pairs`' table with the same seed, epoch e."""
    clips = _clips([6, 12, 40, 3])
    tl = _timelines(clips, fps=60.0)
    for unit, delta in (("frames", (1, 4)), ("ms", (30, 140))):
        for epoch in (0, 3):
            ours = delta_pairs(tl, delta, 5, unit=unit, seed=7, epoch=epoch)
            table = sample_pairs(tl, delta=delta, unit=unit, per_clip=5, seed=7, epoch=epoch)
            index = {c.key: i for i, c in enumerate(clips)}
            theirs = [
                (index[k], t, t2) for k, t, t2 in zip(table.key, table.t_idx, table.t2_idx, strict=True)
            ]
            assert ours == theirs


def test_delta_in_ms_gives_equal_time_offsets_at_any_frame_rate() -> None:
    slow, fast = _clips([30]), [ClipInfo("d/fast", "x.h5", "d", "s", 200, 0, 100)]
    tl = _timelines(slow, fps=30.0) + _timelines(fast, fps=200.0)
    s = PairSampler(slow + fast, delta=(30, 140), unit="ms", pairs_per_clip=400, seed=0, timelines=tl)
    pairs = list(s)
    assert len(pairs) == len(s)
    frames = {0: set(), 1: set()}
    for ci, t, t2 in pairs:
        ms = tl[ci].timestamps_ms[t2] - tl[ci].timestamps_ms[t]
        assert 30 - 1e-6 <= ms <= 140 + 1e-6
        frames[ci].add(t2 - t)
    assert frames[0] == {1, 2, 3, 4}  # 33..133 ms at 30 fps
    assert min(frames[1]) == 6 and max(frames[1]) == 28  # 30..140 ms at 200 fps


def test_delta_in_frames_counts_source_frames_of_subsampled_clips() -> None:
    """Stored every 2nd source frame: δ in [1, 4] source frames can only be 2 or 4 (1 or 2 stored steps)."""
    clips = _clips([20])
    pairs = delta_pairs(_timelines(clips, step=2), (1, 4), 30, seed=1)
    assert pairs and {t2 - t for _, t, t2 in pairs} == {1, 2}


def test_sampler_reads_timelines_from_the_shards(build: Path) -> None:
    clips, _, _ = load_clips(build)
    s = PairSampler(clips, delta=(1, 3), pairs_per_clip=4, seed=2)
    assert [t.key for t in s.timelines] == [c.key for c in clips]
    with h5py.File(clips[0].shard) as f:
        assert np.array_equal(s.timelines[0].frame_numbers, f["clips"][clips[0].key]["frame_numbers"][()])
    assert len(list(s)) == len(s) == 4 * len(clips)
    with pytest.raises(ValueError, match="order of clips"):
        PairSampler(clips, timelines=s.timelines[::-1])
    with pytest.raises(ValueError, match="unit"):
        PairSampler(clips, unit="seconds")  # type: ignore[arg-type]


def test_sampler_shards_across_ranks() -> None:
    clips = _clips([10] * 5)
    tl = _timelines(clips)
    full = PairSampler(clips, pairs_per_clip=3, seed=1, timelines=tl)
    parts = [
        list(PairSampler(clips, pairs_per_clip=3, seed=1, rank=r, world_size=2, timelines=tl))
        for r in range(2)
    ]
    assert (
        len(parts[0])
        == len(parts[1])
        == len(PairSampler(clips, pairs_per_clip=3, world_size=2, timelines=tl))
    )
    assert len(parts[0]) == 8
    assert set(parts[0]) | set(parts[1]) == set(full)


def test_keyframe_pairs_jitter_stays_inside_and_ordered() -> None:
    clips = [
        ClipInfo("d/a", "x", "d", "s", 6, 0, 5),
        ClipInfo("d/b", "x", "d", "s", 9, 3, 3),
        ClipInfo("d/c", "x", "d", "s", 4, -1, -1),
        ClipInfo("d/e", "x", "d", "s", 1, 0, 0),
    ]
    assert keyframe_pairs(clips, 0, None)[:3] == [(0, 0, 5), (1, 3, 4), (2, 0, 2)]
    for e in range(50):
        for ci, on, ap in keyframe_pairs(clips, 3, epoch_rng(0, e)):
            n = clips[ci].n_frames
            assert 0 <= on <= ap < n and (on < ap or n == 1)


def test_dataset_reads_the_right_frames_lazily(build: Path) -> None:
    clips, rows, dropped = load_clips(build)
    assert len(clips) == 6 and dropped["failed"] == 0
    ds = PairDataset(clips, frame_size(clips))
    assert ds.handles._files == {}  # nothing opened in __init__
    ds2 = pickle.loads(pickle.dumps(ds))  # picklable for DataLoader workers
    batch = ds2.__getitems__([(0, 1, 4), (5, 0, 8)])
    assert batch["frames"].shape == (2, 2, 32, 32, 3) and batch["frames"].dtype == torch.uint8
    with h5py.File(clips[5].shard) as f:
        ref = f["clips"][clips[5].key]["frames"]
        assert np.array_equal(batch["frames"][1, 0].numpy(), ref[0])
        assert np.array_equal(batch["frames"][1, 1].numpy(), ref[8])
    assert batch["index"].tolist() == [[0, 1, 4], [5, 0, 8]]
    with pytest.raises(IndexError):
        ds2.__getitems__([(0, 0, 9)])


def test_loader_batches_and_label_scheme_drops_clips(build: Path) -> None:
    scheme = LabelScheme(
        "toy", ("happiness", "disgust"), {"casme2": {"happiness": "happiness", "disgust": "disgust"}}
    )
    clips, _, dropped = load_clips(build, label_fn=lambda r: scheme.label(r.dataset, r.emotion_raw))
    assert dropped["label"] == 6 - len(clips) and {c.label for c in clips} <= {0, 1} and clips
    sampler = PairSampler(clips, mode="keyframes", seed=0)
    loader = make_loader(PairDataset(clips, 32), sampler, batch_size=2, num_workers=0)
    labels = torch.cat([b["label"] for b in loader])
    assert sorted(labels.tolist()) == sorted(c.label for c in clips)


def test_loader_with_worker_process(build: Path) -> None:
    clips, _, _ = load_clips(build)
    loader = make_loader(
        PairDataset(clips, 32),
        PairSampler(clips, pairs_per_clip=2, seed=0, shuffle=False),
        batch_size=4,
        num_workers=1,
    )
    assert sum(b["frames"].shape[0] for b in loader) == 12


def test_augmentation_is_identical_on_both_frames() -> None:
    torch.manual_seed(0)
    frame = torch.rand(3, 1, 3, 32, 32)
    pair = torch.cat([frame, frame], dim=1)
    cfg = AugmentConfig(flip=0.5, rotate_deg=15, scale=0.1, shift=0.1)
    out = augment_pairs(pair, cfg, torch.Generator().manual_seed(1))
    assert out.shape == pair.shape
    assert torch.equal(out[:, 0], out[:, 1])  # same geometry and colour for I_t and I_t+δ
    assert not torch.allclose(out, pair)
    again = augment_pairs(pair, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)  # fixed by the generator


def test_prepare_pairs_resizes_and_normalises() -> None:
    frames = torch.full((2, 2, 64, 64, 3), 128, dtype=torch.uint8)
    x = prepare_pairs(frames, 32)
    assert x.shape == (2, 2, 3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x[0, 0, 0], torch.full((32, 32), (128 / 255 - 0.485) / 0.229), atol=1e-5)


def test_jpeg_shards_read_through_the_same_function(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    build = write_toy_build(
        tmp_path / "jpeg", subjects=1, clips_per_subject=2, n_frames=5, size=32, jpeg_quality=95
    )
    raw = write_toy_build(tmp_path / "raw", subjects=1, clips_per_subject=2, n_frames=5, size=32)
    cj, _, _ = load_clips(build)
    cr, _, _ = load_clips(raw)
    assert frame_size(cj) == 32
    a = PairDataset(cj, 32).__getitems__([(1, 0, 3)])["frames"].int()
    b = PairDataset(cr, 32).__getitems__([(1, 0, 3)])["frames"].int()
    assert (a - b).abs().float().mean() < 4.0  # JPEG q95 of the same frames


def test_pair_table_mode(build: Path, tmp_path: Path) -> None:
    from mepipe.train import pretrain
    from mepipe.train.data import table_pairs
    from tests.toy import tiny_config

    clips, _, _ = load_clips(build)
    rows = [(clips[0].key, 0, 3), ("casme2/not-built", 0, 1), (clips[2].key, 4, 5)]
    assert table_pairs(clips, rows) == [(0, 0, 3), (2, 4, 5)]
    with pytest.raises(ValueError, match="outside"):
        table_pairs(clips, [(clips[0].key, 5, 9)])
    s = PairSampler(clips, mode="table", table=[(0, 0, 3), (2, 4, 5)], seed=0)
    assert sorted(s) == [(0, 0, 3), (2, 4, 5)] and len(s) == 2
    lines = ["key,shard,t_idx,t2_idx,delta_frames,delta_ms"]
    lines += [f"{c.key},{Path(c.shard).name},1,{1 + d},{d},{d * 5.0}" for c in clips for d in (1, 2)]
    (build / "pairs.csv").write_text("\n".join(lines) + "\n")
    try:
        res = pretrain(tiny_config("pretrain", build, tmp_path / "run", data__pairs="table", optim__epochs=1))
    finally:
        (build / "pairs.csv").unlink()
    assert res.history[0]["pairs"] == 2 * len(clips)


def test_pair_dataset_len_and_integer_indexing_agree(build: Path) -> None:
    clips, _, _ = load_clips(build)
    ds = PairDataset(clips, 32)
    assert len(ds) == len(clips) == 6
    first = ds[0]
    assert first["frames"].shape == (2, 32, 32, 3)
    assert first["index"].tolist() == [0, clips[0].onset_idx, clips[0].apex_idx]  # clip 0's onset/apex pair
    assert torch.equal(ds[-1]["index"], ds[5]["index"])
    assert len(list(ds)) == 6  # iteration stops at len()
    with pytest.raises(IndexError):
        ds[6]
    assert ds[(2, 0, 3)]["index"].tolist() == [2, 0, 3]  # explicit pairs, as the samplers draw them
    custom = PairDataset(clips, 32, pairs=[(1, 0, 1), (4, 2, 8)])
    assert len(custom) == 2 and custom[1]["index"].tolist() == [4, 2, 8]


def test_clip_dataset_integer_indexing_frames_and_transform(build: Path) -> None:
    from mepipe.train.clips import ClipDataset, spread_indices

    assert spread_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert spread_indices(3, 5).tolist() == [0, 0, 1, 2, 2]
    ds = ClipDataset.from_build(build, labels="casme2_5")
    scheme_clips = [c for c in load_clips(build)[0]]
    assert 0 < len(ds) <= len(scheme_clips)
    s = ds[1]
    c = ds.clips[1]
    assert s["frames"].shape == (9, 32, 32, 3) and s["frames"].dtype == torch.uint8
    with h5py.File(c.shard) as f:
        assert np.array_equal(s["frames"].numpy(), f["clips"][c.key]["frames"][()])
    assert s["key"] == c.key and int(s["label"]) == c.label >= 0 and int(s["apex_idx"]) == c.apex_idx
    with pytest.raises(IndexError):
        ds[len(ds)]
    fixed = ClipDataset(
        ds.clips, num_frames=4, transform=lambda x: {**x, "frames": x["frames"].float() / 255}
    )
    t = fixed[0]
    assert t["frames"].shape == (4, 32, 32, 3) and t["frames"].dtype == torch.float32
    assert t["frame_idx"].tolist() == [0, 3, 5, 8]
    batch = next(iter(torch.utils.data.DataLoader(ClipDataset(ds.clips, num_frames=4), batch_size=3)))
    assert batch["frames"].shape == (3, 4, 32, 32, 3) and batch["label"].shape == (3,)


def test_folds_are_computed_on_the_trainers_clips_directly(build: Path) -> None:
    from mepipe.folds import folds_over, make_folds
    from mepipe.shards.manifest import read_manifest
    from mepipe.train.protocol import plan_folds

    clips, _, _ = load_clips(build)
    from_rows = make_folds(read_manifest(build), "loso")
    assert folds_over(clips, "loso") == from_rows  # ClipInfo and ManifestRow fold alike
    with pytest.raises(ConfigError, match="lodo needs at least two datasets"):
        plan_folds(clips, "lodo")  # one dataset: nothing to train on
