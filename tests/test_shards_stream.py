"""Storage-side streaming units: the chunked clip writer (raw and JPEG, subsets through a scratch
file, abort) and the streaming motion-energy estimator."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from mepipe.face.geometry import crop_template
from mepipe.keyframes import MotionEnergyStream, motion_energy, resolve_keyframes
from mepipe.records import ClipRecord
from mepipe.shards.format import ClipOutput, encode_jpeg, jpeg_digest
from mepipe.shards.reader import open_shard, read_clip, read_frames
from mepipe.shards.writer import ShardWriter
from tests.macro_fixtures import expression_clip

S = 48


def _frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, S, S, 3), dtype=np.uint8)


def _meta(key: str, n: int) -> ClipOutput:
    clip = ClipRecord("d", "s1", key, "images", f"/data/{key}", fps=30.0)
    return ClipOutput(
        clip=clip,
        frames=None,  # type: ignore[arg-type]
        frame_numbers=np.arange(10, 10 + n),
        transforms=np.eye(2, 3),
        landmarks_ref=np.zeros((68, 2), np.float32),
        reference_idx=0,
        face_box=np.array([0.0, 0, S, S]),
        faces_found=1,
        face_note="",
        onset_idx=0,
        apex_idx=n // 2,
        offset_idx=n - 1,
        keyframe_source="annotated",
        source_files=[],
        source_sha256=[],
        frames_sha256="",
    )


def _writer(out: Path, encoding: str = "raw", **kw) -> ShardWriter:
    attrs = {"pipeline": "t", "config_hash": "h", "frame_encoding": encoding}
    return ShardWriter(
        out, attrs, max_clips=kw.pop("max_clips", 10), max_bytes=10**9, name="shard-00007", **kw
    )


def test_raw_chunks_give_the_whole_array_digest_and_layout(tmp_path: Path):
    frames = _frames(23)
    w = _writer(tmp_path)
    cw = w.begin_clip(_meta("a", 23).clip, frame_shape=(S, S, 3))
    for start in (0, 5, 6, 17):  # uneven chunks, and one single frame
        cw.append(frames[start : {0: 5, 5: 6, 6: 17, 17: 23}[start]])
    assert cw.digest == hashlib.sha256(frames.tobytes()).hexdigest()
    assert cw.finish(_meta("a", 23)) == "shard-00007.h5"
    whole = _meta("b", 23)
    w.add(replace(whole, frames=frames, frames_sha256=hashlib.sha256(frames.tobytes()).hexdigest()))
    w.close()
    assert w.closed_names == ["shard-00007.h5"] and not list((tmp_path / "shards").glob("*.tmp"))
    with open_shard(tmp_path / "shards" / "shard-00007.h5") as f:
        a, b = f["clips/d/a"], f["clips/d/b"]
        assert a["frames"].chunks == (1, S, S, 3) and a["frames"].shape == (23, S, S, 3)
        assert np.array_equal(a["frames"][()], frames) and np.array_equal(b["frames"][()], frames)
        assert a.attrs["frames_sha256"] == b.attrs["frames_sha256"] == cw.digest
        assert f.attrs["n_clips"] == 2


def test_jpeg_stream_matches_encoding_the_whole_clip(tmp_path: Path):
    frames = _frames(9, seed=1)
    blobs = encode_jpeg(frames, 90)
    w = _writer(tmp_path, "jpeg")
    cw = w.begin_clip(_meta("a", 9).clip, frame_shape=(S, S, 3), encoding="jpeg", jpeg_quality=90)
    cw.append(frames[:4])
    cw.append(frames[4:])
    assert cw.digest == jpeg_digest(blobs) and cw.nbytes == sum(len(b) for b in blobs)
    cw.finish(_meta("a", 9))
    w.close()
    clip = read_clip(tmp_path / "shards" / "shard-00007.h5", "d/a")
    assert clip.attrs["frame_encoding"] == "jpeg" and clip.attrs["jpeg_quality"] == 90
    ref = np.stack([cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)[..., ::-1] for b in blobs])
    assert np.array_equal(clip.frames, ref)


@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
@pytest.mark.parametrize("memory_bytes", [0, 10 * S * S * 3, None])  # file at once / spills / in memory
def test_buffered_clip_holds_raw_frames_and_keeps_only_the_chosen_ones(
    tmp_path: Path, encoding, memory_bytes
):
    frames = _frames(30, seed=2)
    keep = np.array([0, 3, 4, 9, 29])
    w = _writer(tmp_path, encoding, memory_bytes=memory_bytes)
    cw = w.begin_clip(
        _meta("a", 5).clip, frame_shape=(S, S, 3), encoding=encoding, jpeg_quality=95, buffered=True
    )
    for k in range(0, 30, 7):
        cw.append(frames[k : k + 7])
        assert np.array_equal(cw.read(k), frames[k])  # the exact raw crop, also for JPEG clips
    assert cw.n == 0 and cw.appended == 30  # nothing in the shard yet
    scratch = list((tmp_path / "scratch").glob("*.h5"))
    if memory_bytes is None:
        assert not scratch  # a short clip stays in memory
    else:
        assert len(scratch) == 1 and scratch[0] == cw.scratch_path
        with h5py.File(scratch[0], "r", locking=False) as f:
            assert f["frames"].shape == (30, S, S, 3)
    assert all(np.array_equal(cw.read(i), frames[i]) for i in range(30))
    cw.finish(_meta("a", 5), keep=keep)
    assert not list((tmp_path / "scratch").glob("*"))
    with pytest.raises(ValueError, match="cannot be read back"):
        cw.read(0)
    w.close()
    with open_shard(tmp_path / "shards" / "shard-00007.h5") as f:
        g = f["clips/d/a"]
        got = read_frames(g)
        want = frames[keep]
        expected = (
            hashlib.sha256(want.tobytes()).hexdigest()
            if encoding == "raw"
            else jpeg_digest(encode_jpeg(want, 95))
        )
        assert g.attrs["frames_sha256"] == expected and len(got) == 5
        if encoding == "raw":
            assert np.array_equal(got, want)


def test_abort_leaves_no_partial_group_and_empty_shards_vanish(tmp_path: Path):
    w = _writer(tmp_path)
    cw = w.begin_clip(ClipRecord("d", "s1", "sub/x", "images", "/x"), frame_shape=(S, S, 3))
    cw.append(_frames(4))
    with pytest.raises(RuntimeError, match="still open"):
        w.begin_clip(ClipRecord("d", "s1", "y", "images", "/y"), frame_shape=(S, S, 3))
    cw.abort()
    cw2 = w.begin_clip(_meta("kept", 3).clip, frame_shape=(S, S, 3))
    cw2.append(_frames(3))
    with pytest.raises(ValueError, match="3 frames stored but 5 frame numbers"):
        cw2.finish(_meta("kept", 5))  # a failing finish aborts the clip too
    w.close()
    assert not list((tmp_path / "shards").iterdir())  # nothing was stored: no shard at all
    w2 = _writer(tmp_path)
    cw = w2.begin_clip(_meta("ok", 2).clip, frame_shape=(S, S, 3))
    cw.append(_frames(2))
    cw.finish(_meta("ok", 2))
    cw = w2.begin_clip(ClipRecord("d", "s1", "sub/x", "images", "/x"), frame_shape=(S, S, 3), buffered=True)
    cw.append(_frames(3))
    cw.abort()
    w2.close()
    assert not list((tmp_path / "scratch").glob("*"))
    with open_shard(tmp_path / "shards" / "shard-00007.h5") as f:
        assert list(f["clips/d"]) == ["ok"] and f.attrs["n_clips"] == 1


def test_add_hashes_unless_given_and_publish_never_replaces(tmp_path: Path):
    frames = _frames(3)
    w = _writer(tmp_path)
    w.add(replace(_meta("a", 3), frames=frames, frames_sha256="f" * 64))  # trusted, not recomputed
    w.add(replace(_meta("b", 3), frames=frames))  # computed while writing
    assert w._file["clips/d/a"].attrs["frames_sha256"] == "f" * 64
    assert w._file["clips/d/b"].attrs["frames_sha256"] == hashlib.sha256(frames.tobytes()).hexdigest()
    (tmp_path / "shards" / "shard-00007.h5").write_bytes(b"someone else's")
    with pytest.raises(FileExistsError, match="refusing to replace"):
        w.close()
    assert (tmp_path / "shards" / "shard-00007.h5").read_bytes() == b"someone else's"


def test_rollover_by_bytes_names_further_shards(tmp_path: Path):
    frames = _frames(4)
    w = ShardWriter(
        tmp_path, {"config_hash": "h"}, max_clips=10, max_bytes=frames.nbytes + 1, name="shard-00003"
    )
    for k in range(3):
        w.add(replace(_meta(f"c{k}", 4), frames=frames))
    w.close()
    assert w.closed_names == ["shard-00003.h5", "shard-00003-1.h5", "shard-00003-2.h5"]


def test_streaming_motion_energy_equals_the_whole_array():
    frames = np.stack([cv2.resize(f, (96, 96)) for f in expression_clip(24, 5, 12, 20, drift=2.0)])
    pts = crop_template(96, 0.3)
    stream = MotionEnergyStream(pts, 96)
    for f in frames:
        stream.add(f)
    e = stream.energy()
    assert len(stream) == 24 and np.array_equal(e, motion_energy(frames, pts))
    assert e[0] == e[1] and int(np.argmax(e)) in range(10, 15)  # the smile peaks at frame 12
    with pytest.raises(ValueError, match="expected \\(96, 96, 3\\) uint8"):
        stream.add(frames[0][:50])
    clip = ClipRecord("d", "s", "c", "images", "/x", onset=None, apex=None, offset=None, fps=25.0)
    numbers = np.arange(24)
    from_stream = resolve_keyframes(clip, numbers, energy=e, fps=25.0)
    from_frames = resolve_keyframes(clip, numbers, frames=frames, crop_points=pts, fps=25.0)
    assert (from_stream.onset_idx, from_stream.apex_idx, from_stream.offset_idx) == (
        from_frames.onset_idx,
        from_frames.apex_idx,
        from_frames.offset_idx,
    )
    assert np.array_equal(from_stream.curve, from_frames.curve)
    assert len(MotionEnergyStream(pts, 96).energy()) == 0
