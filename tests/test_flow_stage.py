"""`mepipe flow OUT`: flow added to an existing build, atomic, resumable, verify still passes."""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from mepipe.build import build_dataset
from mepipe.config import FlowConfig, load_config
from mepipe.errors import ConfigError
from mepipe.flow import compute_flow, flow_channels, tvl1_available
from mepipe.flow_stage import FLOW_INFO_NAME, add_flow, clip_flows, flow_hash, read_clip_flow
from mepipe.shards.manifest import read_manifest
from mepipe.shards.reader import read_clip, read_frame
from mepipe.shards.verify import verify_build
from mepipe.synth import synthesize


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("flowstage")
    data = synthesize("casme2", tmp / "data", subjects=2, clips_per_subject=3, seed=2)
    cfg = load_config("demo-micro", {"align.crop_size": 96, "shards.max_clips": 2})
    build_dataset(cfg, data.out, tmp / "out")
    return tmp / "out"


@pytest.fixture
def build(built, tmp_path) -> Path:
    shutil.copytree(built, tmp_path / "b")
    return tmp_path / "b"


def _ok(build: Path):
    return [r for r in read_manifest(build) if r.status == "ok"]


def test_flow_is_stored_readable_with_plain_h5py_and_verify_still_passes(build):
    cfg = FlowConfig(size=64)
    s = add_flow(build, cfg)
    ok = _ok(build)
    assert s.clips == len(ok) and s.flows == len(ok) and s.shards_skipped == 0
    assert verify_build(build).ok
    r = ok[0]
    with h5py.File(build / "shards" / r.shard, "r") as f:  # plain h5py, as a user would
        ds = f["clips"][r.key]["flow"]["onset_apex"]
        assert ds.shape == (64, 64, 4) and ds.dtype == np.float32
        assert list(ds.attrs["frame_idx"]) == [r.onset_idx, r.apex_idx]
        assert ds.attrs["backend"] == "dis" and f.attrs["schema_version"] == 3
        g = f["clips"][r.key]
        expected = flow_channels(compute_flow(read_frame(g, r.onset_idx), read_frame(g, r.apex_idx), size=64))
    with h5py.File(build / "shards" / r.shard, "r") as f:
        data, attrs = read_clip_flow(f["clips"][r.key])
    assert np.allclose(data, expected, atol=1e-5)
    assert attrs["channels"] == ["u", "v", "magnitude", "strain"]
    info = json.loads((build / FLOW_INFO_NAME).read_text())
    assert info["flow_hash"] == flow_hash(cfg) and info["clips"] == len(ok)
    clip = read_clip(build / "shards" / r.shard, r.key)  # the mepipe reader accepts schema 3
    assert clip.frames.shape[0] == r.n_frames


def test_rerun_skips_and_changed_settings_replace(build):
    add_flow(build, FlowConfig(size=64))
    again = add_flow(build, FlowConfig(size=64))
    assert again.shards_done == 0 and again.shards_skipped == len({r.shard for r in _ok(build)})
    other = add_flow(build, FlowConfig(size=32, pairs=("onset_apex", "apex_offset"), normalisation="minmax"))
    assert other.shards_done > 0
    r = next(r for r in _ok(build) if r.offset_idx > r.apex_idx)
    with h5py.File(build / "shards" / r.shard, "r") as f:
        fg = f["clips"][r.key]["flow"]
        assert sorted(fg) == ["apex_offset", "onset_apex"] and fg["onset_apex"].shape == (32, 32, 4)
        assert fg["onset_apex"][()].min() >= 0.0 and fg["onset_apex"][()].max() <= 1.0


def test_interrupted_run_leaves_shards_intact_and_resumes(build, monkeypatch):
    import mepipe.flow_stage as fs

    before = {p.name: p.read_bytes() for p in (build / "shards").glob("*.h5")}
    calls = {"n": 0}
    real = fs.clip_flows

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # the second shard's first clip (2 clips per shard)
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    monkeypatch.setattr(fs, "clip_flows", dying)
    with pytest.raises(KeyboardInterrupt):
        add_flow(build, FlowConfig(size=48))
    assert not list((build / "shards").glob("*.flowtmp"))
    changed = [n for n, b in before.items() if (build / "shards" / n).read_bytes() != b]
    assert len(changed) == 1  # the first shard was finished and replaced; the others are untouched
    assert verify_build(build).ok
    monkeypatch.setattr(fs, "clip_flows", real)
    s = add_flow(build, FlowConfig(size=48))
    assert s.shards_skipped == 1 and s.shards_done == len(before) - 1


def test_pairs_and_errors():
    frames = {i: np.full((32, 32, 3), 100 + i, np.uint8) for i in range(6)}
    flows = clip_flows(frames.__getitem__, 1, 3, 5, 6, FlowConfig(pairs=("onset_every",), every=2, size=32))
    assert [(f.name, f.i0, f.i1) for f in flows] == [("onset_to_3", 1, 3), ("onset_to_5", 1, 5)]
    with pytest.raises(ValueError, match="flow.scale"):
        FlowConfig(normalisation="fixed")
    if not tvl1_available():  # the default install: headless OpenCV without the contrib modules
        with pytest.raises(ConfigError, match="opencv-contrib"):
            clip_flows(frames.__getitem__, 0, 1, 2, 6, FlowConfig(backend="tvl1", size=32))
