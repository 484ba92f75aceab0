"""Video sources end to end through the ``folder`` adapter: good clips, bad input (each a manifest row
with a reason), JPEG storage, subsampling and the pair table."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from mepipe.build import build_dataset
from mepipe.cli import app
from mepipe.config import parse_config
from mepipe.decoders import VideoSource
from mepipe.records import ClipRecord
from mepipe.shards import read_frame, read_frames, read_manifest, verify_build
from mepipe.sources import FrameReadError, open_source
from tests.macro_fixtures import expression_clip, face_frame, write_h264, write_video

pytest.importorskip("decord")


def _cfg(**over) -> object:
    data = {
        "name": "v",
        "dataset": {"adapter": "folder", "options": {}},
        "face": {"min_face": 40, "reference": "first"},
        "align": {"crop_size": 64},
        "keyframes": {"mode": "estimate", "analysis_size": 64},
    }
    for k, v in over.items():
        data[k] = {**data.get(k, {}), **v}
    return parse_config(data)


def _damaged(path: Path) -> Path:
    """An H.264 file whose index is intact but whose data is overwritten 70 % of the way in: it opens,
    the first 9 frames decode, then decoding fails."""
    src = write_h264(path.with_name("src_" + path.name), expression_clip(24, drift=3.0), faststart=True)
    data = bytearray(src.read_bytes())
    m = data.find(b"mdat")
    pos = m + int((len(data) - m) * 0.7)
    data[pos : pos + 400] = np.random.default_rng(0).bytes(400)
    src.unlink()
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    clip = expression_clip(24, 5, 12, 20, drift=2.0)
    write_video(root / "good.mp4", clip)
    write_video(root / "late_face.mp4", expression_clip(24, 12, 16, 21, visible_from=8))
    write_video(root / "no_face.mp4", [face_frame(visible=False)] * 12)
    write_video(root / "grey.avi", [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip], fourcc="MJPG")
    write_video(root / "large.mp4", [face_frame((1920, 1080), 800, smile=s) for s in (0, 0.5, 1, 0.5, 0, 0)])
    (root / "empty.mp4").write_bytes(b"")
    (root / "garbage.mp4").write_bytes(np.random.default_rng(1).bytes(5000))
    good = (root / "good.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(good[: len(good) // 2])
    pytest.importorskip("av")
    times = np.cumsum([0] + [20 if k % 2 else 60 for k in range(23)]).tolist()
    write_h264(root / "vfr.mp4", clip, times_ms=times)
    _damaged(root / "damaged.mp4")
    return root


@pytest.fixture(scope="module")
def built(videos: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vout") / "b"
    build_dataset(_cfg(pairs={"write": True, "per_clip": 6}), videos, out)
    return out


def test_video_source_reads_sequentially_with_container_timing(videos: Path):
    rec = ClipRecord("folder", "s", "good", "video", str(videos / "good.mp4"), fps=1.0)
    src = open_source(rec)
    assert isinstance(src, VideoSource) and not src.random_access
    assert len(src) == 24 and src.fps == pytest.approx(25.0) and src.frame_numbers == list(range(24))
    assert np.allclose(np.diff(src.timestamps_ms()), 40.0)
    frames = [f for _, f in src.iter_range(0, 24)]
    assert frames[0].shape == (240, 320, 3) and frames[0].dtype == np.uint8
    assert np.array_equal(src.read(23), frames[23])  # an indexed read gives the same pixels
    part = ClipRecord(
        "folder", "s", "part", "video", str(videos / "good.mp4"), frame_numbers=tuple(range(10, 15))
    )
    sub = open_source(part)
    got = [f for _, f in sub.iter_range(0, 5)]
    assert len(got) == 5 and np.array_equal(got[0], frames[10])
    with pytest.raises(ValueError, match="contiguous"):
        open_source(
            ClipRecord("folder", "s", "x", "video", str(videos / "good.mp4"), frame_numbers=(20, 21, 30))
        )
    with pytest.raises(FrameReadError) as err:
        open_source(
            ClipRecord("folder", "s", "x", "video", str(videos / "good.mp4"), frame_numbers=(22, 23, 24))
        )
    assert err.value.reason == "keyframe_not_on_disk"


def test_bad_videos_become_rows_with_reasons(built: Path):
    rows = {r.clip_id: r for r in read_manifest(built)}
    failed = {k: r.reason for k, r in rows.items() if r.status == "failed"}
    assert failed == {
        "no_face": "no_face",
        "empty": "empty_video",
        "garbage": "unreadable_video",
        "truncated": "unreadable_video",
        "damaged": "corrupt_video",
    }
    assert "searched 12 frames" in rows["no_face"].message and "zero-length" in rows["empty"].message
    assert "frame 9" in rows["damaged"].message
    ok = {k for k, r in rows.items() if r.status == "ok"}
    assert ok == {"good", "late_face", "grey", "large", "vfr"}
    late = rows["late_face"]
    assert late.reference_frame == 8 and "no face on frame 0, used frame 8" in late.face_note
    assert late.n_frames == 16 and late.face_span == "8-23"  # the frames before the face are not kept
    assert rows["good"].fps == pytest.approx(25.0) and rows["good"].keyframe_source == "estimated"
    assert abs(rows["good"].apex - 12) <= 1
    assert "variable frame rate" in rows["vfr"].message and rows["good"].message == ""
    assert json.loads((built / "build-info.json").read_text())["failures_by_reason"]["unreadable_video"] == 2


def test_video_clips_read_back_with_plain_h5py(built: Path):
    rows = {r.clip_id: r for r in read_manifest(built)}
    r = rows["vfr"]
    with h5py.File(built / "shards" / r.shard, "r") as f:
        g = f["clips"][r.key]
        assert g["frames"].shape == (24, 64, 64, 3) and g.attrs["frame_encoding"] == "raw"
        ts = g["timestamps_ms"][()]
        assert np.diff(ts).round().tolist()[:4] == [60.0, 20.0, 60.0, 20.0]
        assert len(g.attrs["source_file_sha256"]) == 64 and g["motion_energy"].shape == (24,)
        assert list(g["frame_numbers"][()]) == list(range(24))
    grey = rows["grey"]
    with h5py.File(built / "shards" / grey.shard, "r") as f:
        fr = f["clips"][grey.key]["frames"][5]
        assert np.array_equal(fr[..., 0], fr[..., 1])  # grey video replicated to RGB
    large = rows["large"]
    with h5py.File(built / "shards" / large.shard, "r") as f:
        box = f["clips"][large.key].attrs["face_box"]
        assert box[2] - box[0] > 300  # found on a downscaled copy, reported in full-resolution pixels


def test_pairs_written_and_verified(built: Path):
    import pandas as pd

    pairs = pd.read_csv(built / "pairs.csv")
    n = {r.key: r.n_frames for r in read_manifest(built) if r.status == "ok"}
    assert set(pairs.key) == set(n) and (pairs.groupby("key").size() == 6).all()
    assert (pairs.t2_idx < pairs.key.map(n)).all() and pairs.delta_frames.between(1, 4).all()
    vfr = pairs[pairs.key == "folder/vfr"]
    assert set(vfr.delta_ms.round()) <= {20.0, 60.0, 80.0, 100.0, 140.0, 160.0}
    assert verify_build(built).ok
    res = CliRunner().invoke(
        app, ["pairs", str(built), "--delta", "50:130", "--unit", "ms", "--per-clip", "3"]
    )
    assert res.exit_code == 0, res.output
    again = pd.read_csv(built / "pairs.csv")
    assert again.delta_ms.between(40, 140).all() and (again.groupby("key").size() <= 3).all()
    info = json.loads((built / "pairs.json").read_text())
    assert info["unit"] == "ms" and info["delta"] == [50.0, 130.0] and info["pairs"] == len(again)
    bad = again.copy()
    bad.loc[0, "t2_idx"] = 999
    bad.to_csv(built / "pairs.csv", index=False)
    rep = verify_build(built)
    assert not rep.ok and "pairs.csv" in rep.problems[0]
    again.to_csv(built / "pairs.csv", index=False)


def test_jpeg_storage_subsampling_and_truncation(videos: Path, tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("good.mp4", "damaged.mp4"):
        (src / name).write_bytes((videos / name).read_bytes())
    out = tmp_path / "jpeg"
    cfg = _cfg(
        storage={"encoding": "jpeg", "jpeg_quality": 90, "frame_step": 4},
        video={"on_decode_error": "truncate"},
    )
    build_dataset(cfg, src, out)
    rows = {r.clip_id: r for r in read_manifest(out)}
    good, dmg = rows["good"], rows["damaged"]
    assert dmg.status == "ok" and "truncated" in dmg.message
    with h5py.File(out / "shards" / good.shard, "r") as f:
        assert f.attrs["schema_version"] == 2 and f.attrs["frame_encoding"] == "jpeg"
        g = f["clips"][good.key]
        assert (
            "frames" not in g
            and g.attrs["frame_encoding"] == "jpeg"
            and tuple(g.attrs["frame_shape"]) == (64, 64, 3)
        )
        numbers = g["frame_numbers"][()]
        # every 4th frame, plus the keyframes and the reference frame, which always survive
        assert set(range(0, 24, 4)) <= set(numbers.tolist())
        for k in ("onset", "apex", "offset"):
            assert numbers[g.attrs[f"{k}_idx"]] == g.attrs[k]
        assert g.attrs["source_n_frames"] == 24 and good.n_frames == len(numbers) < 24
        frames = read_frames(g)
        assert frames.shape == (good.n_frames, 64, 64, 3)
        assert np.array_equal(read_frame(g, 2), frames[2])
        raw = cv2.imdecode(g["frames_jpeg"][2], cv2.IMREAD_COLOR)[..., ::-1]  # plain cv2 decodes it too
        assert np.array_equal(raw, frames[2])
        assert frames[:, 20:44, 20:44].std() > 10
    with h5py.File(out / "shards" / dmg.shard, "r") as f:
        assert f["clips"][dmg.key].attrs["source_n_frames"] == 9
    assert verify_build(out).ok
    with h5py.File(out / "shards" / good.shard, "r+") as f:
        ds = f["clips"][good.key]["frames_jpeg"]
        blob = ds[1].copy()
        blob[len(blob) // 2] ^= 0xFF
        ds[1] = blob
    rep = verify_build(out)
    assert not rep.ok and good.key in rep.problems[0]


def test_spilled_buffer_and_per_frame_mode_on_video(videos: Path, built: Path, tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("good.mp4", "late_face.mp4"):
        (src / name).write_bytes((videos / name).read_bytes())
    # no room to keep the frames before the face: they are decoded a second time, same result
    out = tmp_path / "spill"
    build_dataset(_cfg(video={"buffer_mb": 0}), src, out)
    before = {r.clip_id: r.frames_sha256 for r in read_manifest(built) if r.status == "ok"}
    after = {r.clip_id: r.frames_sha256 for r in read_manifest(out)}
    assert after == {k: before[k] for k in ("good", "late_face")}
    out = tmp_path / "pf"
    build_dataset(_cfg(align={"mode": "per_frame", "smoothing": 3}, storage={"max_frames": 10}), src, out)
    rows = {r.clip_id: r for r in read_manifest(out)}
    assert all(r.status == "ok" and r.n_frames == 10 for r in rows.values())
    with h5py.File(out / "shards" / rows["late_face"].shard, "r") as f:
        g = f["clips"]["folder/late_face"]
        assert g["transform"].shape == (10, 2, 3) and g.attrs["reference_frame"] == 8
        assert 8 in g["frame_numbers"][()].tolist()


@pytest.mark.parametrize("name", ["good.mp4", "grey.avi", "vfr.mp4"])
def test_pyav_and_decord_decode_the_same_frames(videos: Path, name: str):
    from mepipe.decoders import DECODERS

    rec = ClipRecord("folder", "s", name, "video", str(videos / name))
    got = {}
    for dec in ("pyav", "decord"):
        src = DECODERS.get(dec)(rec)
        got[dec] = (np.stack([f for _, f in src.iter_range(0, len(src))]), src.timestamps_ms(), src.fps)
    (fa, ta, pa), (fd, td, pd_) = got["pyav"], got["decord"]
    assert fa.shape == fd.shape and np.array_equal(fa, fd)  # same FFmpeg conversion: identical pixels
    assert np.allclose(ta, td, atol=1e-3) and pa == pytest.approx(pd_)
    # an interval of the file (one seek) gives the same frames as decoding from the start
    part = open_source(replace_frames(rec, range(10, 15)), decoder="pyav")
    assert np.array_equal(np.stack([f for _, f in part.iter_range(0, 5)]), fa[10:15])
    assert np.array_equal(part.read(3), fa[13])


def replace_frames(rec: ClipRecord, numbers) -> ClipRecord:
    from dataclasses import replace

    return replace(rec, frame_numbers=tuple(numbers))


def test_decoder_choice_in_the_config_and_a_missing_one(videos: Path, tmp_path: Path, monkeypatch):
    from mepipe.errors import ConfigError

    src = tmp_path / "src"
    src.mkdir()
    (src / "good.mp4").write_bytes((videos / "good.mp4").read_bytes())
    with_pyav = tmp_path / "a"
    build_dataset(_cfg(), src, with_pyav)
    with_decord = tmp_path / "b"
    build_dataset(_cfg(video={"decoder": "decord"}), src, with_decord)
    a, b = read_manifest(with_pyav)[0], read_manifest(with_decord)[0]
    assert a.status == b.status == "ok" and a.frames_sha256 == b.frames_sha256
    with h5py.File(with_decord / "shards" / b.shard) as f:
        assert f.attrs["video_decoder"] == "decord"
    monkeypatch.setitem(__import__("sys").modules, "decord", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"video.decoder 'decord' needs .*pip install 'mepipe\[decord\]'"):
        build_dataset(_cfg(video={"decoder": "decord"}), src, tmp_path / "c")
    assert not (tmp_path / "c").exists()  # refused before anything was written


@pytest.mark.parametrize("decoder", ["pyav", "decord"])
def test_damaged_video_fails_at_the_same_frame_with_either_decoder(videos: Path, decoder: str):
    src = open_source(ClipRecord("folder", "s", "d", "video", str(videos / "damaged.mp4")), decoder=decoder)
    seen = []
    with pytest.raises(FrameReadError) as err:
        for pos, _ in src.iter_range(0, len(src)):
            seen.append(pos)
    assert err.value.reason == "corrupt_video" and "frame 9 cannot be decoded" in str(err.value)
    assert seen == list(range(9))
