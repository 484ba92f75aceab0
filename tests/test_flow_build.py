"""Flow during the build (``flow.enabled``) stores what ``mepipe flow`` adds afterwards, and
``add_flow`` holds the build lock."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest

from mepipe.build import build_dataset
from mepipe.config import load_config
from mepipe.engine.lock import BuildLock, BuildLockedError
from mepipe.errors import ShardError
from mepipe.flow_stage import FLOW_INFO_NAME, add_flow
from mepipe.shards.manifest import read_manifest
from mepipe.shards.verify import verify_build
from mepipe.synth import synthesize
from tests.build_fixtures import group_items

FLOW = {"flow.size": 48, "flow.pairs": ["onset_apex", "apex_offset"]}


def _shards(out: Path) -> tuple[dict, dict]:
    clips: dict[str, object] = {}
    roots: dict[str, dict] = {}
    for p in sorted((out / "shards").glob("*.h5")):
        with h5py.File(p, "r") as f:
            clips.update(group_items(f["clips"]))
            roots[p.name] = {k: f.attrs[k] for k in ("flow_hash", "schema_version") if k in f.attrs}
    return clips, roots


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return synthesize(
        "casme2", tmp_path_factory.mktemp("flowbuild"), subjects=2, clips_per_subject=2, seed=3
    ).out


@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
def test_build_with_flow_equals_build_then_mepipe_flow(data: Path, tmp_path: Path, encoding):
    common = {"align.crop_size": 64, "shards.max_clips": 2, "storage.encoding": encoding, **FLOW}
    with_flow = load_config("demo-micro", {**common, "flow.enabled": True})
    without = load_config("demo-micro", common)
    build_dataset(with_flow, data, tmp_path / "a")
    build_dataset(without, data, tmp_path / "b")
    later = add_flow(tmp_path / "b", without.flow)
    assert later.shards_done >= 2 and later.flows == 2 * later.clips
    ok_a = [(r.key, r.frames_sha256, r.shard) for r in read_manifest(tmp_path / "a") if r.status == "ok"]
    ok_b = [(r.key, r.frames_sha256, r.shard) for r in read_manifest(tmp_path / "b") if r.status == "ok"]
    assert ok_a == ok_b and len(ok_a) == later.clips
    clips_a, roots_a = _shards(tmp_path / "a")
    clips_b, roots_b = _shards(tmp_path / "b")
    assert sum("/flow/" in k and "@" not in k for k in clips_a) == 2 * len(ok_a)
    assert sorted(clips_a) == sorted(clips_b)
    for k in clips_a:
        assert clips_a[k] == clips_b[k], k
    assert roots_a == roots_b and {r["schema_version"] for r in roots_a.values()} == {3}
    info_a = json.loads((tmp_path / "a" / FLOW_INFO_NAME).read_text())
    assert info_a == json.loads((tmp_path / "b" / FLOW_INFO_NAME).read_text())
    assert verify_build(tmp_path / "a").ok
    again = add_flow(tmp_path / "a", with_flow.flow)  # `mepipe flow` with the same settings: nothing to do
    assert again.shards_done == 0 and again.shards_skipped == len(roots_a)


def test_add_flow_takes_the_build_lock(data: Path, tmp_path: Path):
    cfg = load_config("demo-micro", {"align.crop_size": 64, **FLOW})
    out = tmp_path / "b"
    build_dataset(cfg, data, out)
    holder = BuildLock(out, command="mepipe build-dataset (test holder)")
    with holder, pytest.raises(BuildLockedError, match=r"being built by pid \d+ .*test holder"):
        add_flow(out, cfg.flow)
    assert not list((out / "shards").glob("*.flowtmp"))
    with h5py.File(next((out / "shards").glob("*.h5")), "r") as f:
        assert "flow_hash" not in f.attrs  # nothing was written while the lock was held
    assert add_flow(out, cfg.flow).shards_done >= 1
    assert json.loads((out / "build.lock").read_text())["released"]
    with pytest.raises(ShardError, match="not found"):  # no build there: refused, and no lock file made
        add_flow(tmp_path / "nothing", cfg.flow)
    assert not (tmp_path / "nothing").exists()
