"""The build's streaming per-clip path (:func:`mepipe.process.stream_clip`) stores exactly what the
in-memory path (:func:`mepipe.process.process_clip` + :meth:`ShardWriter.add`) stores: every dataset,
every attribute, the manifest row and the failures, on image folders and videos, raw and JPEG,
subsampled with estimated keyframes, with held frames in memory and in a scratch file."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest

from mepipe.config import parse_config
from mepipe.datasets import get_adapter
from mepipe.process import ok_row, process_clip, stream_clip
from mepipe.records import ClipIssue
from mepipe.shards.writer import ShardWriter
from tests.build_fixtures import group_items, make_synth
from tests.macro_fixtures import expression_clip, write_video


def _cfg(adapter: str, **over):
    data = {
        "name": "s",
        "dataset": {"adapter": adapter, "options": {}},
        "face": {"min_face": 40},
        "align": {"crop_size": 64},
        "keyframes": {"analysis_size": 64},
    }
    for k, v in over.items():
        data[k] = {**data.get(k, {}), **v}
    return parse_config(data)


def _both_ways(cfg, root: Path, out: Path, memory_bytes: int | None = None):
    """Build every clip of ``root`` both ways; returns (clips, issues) seen, after asserting equality."""
    attrs = {"pipeline": cfg.name, "config_hash": cfg.hash(), "frame_encoding": cfg.storage.encoding}
    kw = {"max_clips": 100, "max_bytes": 10**10}
    mem = ShardWriter(out / "mem", attrs, name="shard-00000", **kw)
    streamed = ShardWriter(out / "stream", attrs, name="shard-00000", memory_bytes=memory_bytes, **kw)
    clips = get_adapter(cfg.dataset.adapter, root, **cfg.dataset.options).scan().clips
    ok = issues = 0
    for clip in clips:
        a = process_clip(clip, cfg)
        b = stream_clip(clip, cfg, streamed)
        if isinstance(a, ClipIssue):
            assert b == a
            issues += 1
            continue
        assert not isinstance(b, ClipIssue), b.message
        meta, shard = b
        assert shard == mem.add(a) == "shard-00000.h5"
        assert ok_row(meta, shard) == ok_row(a, shard)
        ok += 1
    mem.close()
    streamed.close()
    assert not (out / "stream" / "scratch").exists() or not list((out / "stream" / "scratch").iterdir())
    with (
        h5py.File(out / "mem/shards/shard-00000.h5") as fa,
        h5py.File(out / "stream/shards/shard-00000.h5") as fb,
    ):
        ia, ib = group_items(fa["clips"]), group_items(fb["clips"])
        assert sorted(ia) == sorted(ib)
        for k in ia:
            assert ia[k] == ib[k], k
    return ok, issues


@pytest.mark.parametrize(
    "over",
    [
        {},
        {"storage": {"encoding": "jpeg", "jpeg_quality": 90}},
        {"keyframes": {"mode": "estimate"}, "storage": {"frame_step": 3}},
        {"keyframes": {"mode": "estimate"}, "storage": {"encoding": "jpeg", "max_frames": 5}},
        {"align": {"mode": "per_frame"}},
    ],
    ids=["raw", "jpeg", "estimate-step", "estimate-jpeg-max", "per-frame"],
)
def test_image_folders_store_the_same_both_ways(tmp_path_factory, tmp_path: Path, over):
    root = make_synth(tmp_path_factory.mktemp("synth"), subjects=2, clips=2)
    ok, _ = _both_ways(_cfg("casme2", **over), root, tmp_path)
    assert ok >= 3


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "good.mp4", expression_clip(30, 5, 14, 24, drift=2.0))
    write_video(root / "late_face.mp4", expression_clip(30, 12, 18, 26, visible_from=8))
    return root


@pytest.mark.parametrize("memory_bytes", [0, None], ids=["scratch-file", "in-memory"])
@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
def test_videos_store_the_same_both_ways(videos: Path, tmp_path: Path, memory_bytes, encoding):
    cfg = _cfg(
        "folder",
        face={"reference": "first"},
        keyframes={"mode": "estimate"},
        storage={"frame_step": 2, "encoding": encoding},
    )
    ok, _ = _both_ways(cfg, videos, tmp_path, memory_bytes)
    assert ok == 2


def test_a_clip_failing_midway_leaves_nothing_and_the_next_one_is_stored(tmp_path_factory, tmp_path: Path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(make_synth(tmp_path_factory.mktemp("synth"), subjects=2, clips=2), root)
    cfg = _cfg("casme2", storage={"encoding": "jpeg"})
    clips = get_adapter("casme2", root).scan().clips
    bad = Path(clips[0].source_path) / clips[0].frame_files[len(clips[0].frame_files) // 2]
    bad.write_bytes(bad.read_bytes()[:200])  # a truncated JPEG in the middle of the first clip
    w = ShardWriter(tmp_path / "out", {"config_hash": "h"}, max_clips=10, max_bytes=10**10, memory_bytes=0)
    got = stream_clip(clips[0], cfg, w)
    assert isinstance(got, ClipIssue) and got.reason == "corrupt_frame" and bad.name in got.message
    assert not list(
        (tmp_path / "out" / "scratch").glob("*")
    )  # its held frames went to a scratch file, now gone
    meta, shard = stream_clip(clips[1], cfg, w)
    w.close()
    with h5py.File(tmp_path / "out" / "shards" / shard) as f:
        assert clips[1].key in f["clips"] and clips[0].key not in f["clips"] and f.attrs["n_clips"] == 1
        assert f["clips"][clips[1].key].attrs["frames_sha256"] == meta.frames_sha256


def test_scratch_left_by_a_killed_build_is_removed_by_the_next_run(tmp_path_factory, tmp_path: Path):
    from mepipe.build import build_dataset

    root = make_synth(tmp_path_factory.mktemp("synth"), subjects=2, clips=2)
    cfg = _cfg("casme2")
    out = tmp_path / "out"
    first = build_dataset(cfg, root, out)
    (out / "scratch").mkdir()
    (out / "scratch" / "shard-00003.h5.tmp.clip0.h5").write_bytes(b"raw frames of a killed build")
    again = build_dataset(cfg, root, out)  # resumes: every clip kept
    assert again.clips_kept == first.clips_ok and not (out / "scratch").exists()
