"""Resumable builds: builds killed at random moments (SIGKILL, also with 2 workers) and at chosen
ones, then run again, end with exactly the clips and frames of a clean build."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from mepipe.build import build_dataset
from mepipe.errors import ConfigError, ShardError
from mepipe.shards import read_manifest, verify_build
from mepipe.shards.manifest import require_complete, write_manifest
from tests.build_fixtures import (
    fast_cfg,
    make_synth,
    ok_digests,
    run_build,
    start_build,
    wait_for,
)


def cfg(**extra):
    return fast_cfg(**extra)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return make_synth(tmp_path_factory.mktemp("resume") / "casme2")


@pytest.fixture(scope="module")
def clean(synth: Path, tmp_path_factory) -> tuple[Path, float]:
    """A clean build made by a subprocess, and how long that subprocess took."""
    out = tmp_path_factory.mktemp("clean") / "out"
    t = time.monotonic()
    res = run_build(synth, out)
    assert res.returncode == 0, res.stdout + res.stderr
    return out, time.monotonic() - t


def _shard_files(out: Path) -> int:
    folder = out / "shards"
    return len(list(folder.iterdir())) if folder.is_dir() else 0


def _kill_and_resume(synth: Path, out: Path, rng: np.random.Generator, workers: int, seconds: float) -> str:
    """Start a build, SIGKILL it at a random moment, check what it left, run it again to the end.

    The moment is drawn from the seeded ``rng``: either a delay after the start (anywhere from the
    imports to the end of the build), or a short random delay after the k-th shard file appeared
    (so that kills land in the middle of the writing, whatever the machine's speed)."""
    interval = str(rng.choice(["0", "5"]))  # manifest rewritten after every task, or every 5 s
    proc = start_build(synth, out, "--workers", str(workers), MEPIPE_MANIFEST_INTERVAL=interval)
    if rng.random() < 0.5:
        moment = f"{float(rng.uniform(0.3, 1.1 * seconds)):.2f} s after the start"
        time.sleep(float(moment.split()[0]))
    else:
        k, extra = int(rng.integers(1, 6)), float(rng.uniform(0.0, 0.3))
        wait_for(lambda: _shard_files(out) >= k or proc.poll() is not None, 120, step=0.01)
        time.sleep(extra)
        moment = f"{extra:.2f} s after shard file {k} appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if (out / "manifest.csv").exists():
        rep = verify_build(out)  # whatever the moment: never damage, at most an unfinished build
        assert rep.ok, (moment, rep.problems)
        assert all(r.status in ("ok", "pending", "failed") for r in read_manifest(out))
    build_dataset(cfg(), synth, out, workers=workers)  # the same build, resumed (in this process)
    return moment


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_random_kills_then_resume_equal_a_clean_build(synth, clean, tmp_path, workers):
    ref, seconds = clean
    rng = np.random.default_rng(1000 + workers)
    for k in range(3):
        out = tmp_path / f"kill{k}"
        moment = _kill_and_resume(synth, out, rng, workers, seconds * (1.5 if workers > 1 else 1.0))
        assert ok_digests(out) == ok_digests(ref), f"killed {moment}"
        rep = verify_build(out)
        assert rep.ok and rep.complete and not rep.notes, (moment, rep.problems, rep.notes)
        state = json.loads((out / "build-state.json").read_text())
        assert state["status"] == "complete" and state["attempts"][-1]["result"] == "complete"


def test_rerun_keeps_everything_and_builds_nothing(synth, tmp_path):
    out = tmp_path / "out"
    first = build_dataset(cfg(), synth, out)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.h5")}
    again = build_dataset(cfg(), synth, out)
    assert again.clips_kept == first.clips_ok == 6 and again.frames == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.h5")} == before
    info = json.loads((out / "build-info.json").read_text())
    assert info["clips_kept_from_earlier_runs"] == 6 and info["attempts"] == 2
    log = (out / "build.log").read_text()
    assert log.count("build finished") == 2 and "6 kept from earlier runs" in log


def test_kill_between_shard_rename_and_manifest_write_is_adopted(synth, tmp_path):
    out = tmp_path / "out"
    build_dataset(cfg(), synth, out)
    ref = ok_digests(out)
    rows = read_manifest(out)
    victim = rows[2].shard  # as if the build died right after renaming this shard
    write_manifest(
        [
            r if r.shard != victim else type(r)(**{**r.__dict__, "status": "pending", "shard": ""})
            for r in rows
        ],
        out,
    )
    state = json.loads((out / "build-state.json").read_text())
    state["status"] = "running"
    (out / "build-state.json").write_text(json.dumps(state))
    rep = verify_build(out)
    assert rep.ok and not rep.complete and any(victim in n for n in rep.notes)
    with pytest.raises(ShardError, match="unfinished build.*run.*again"):
        require_complete(out)
    again = build_dataset(cfg(), synth, out)
    assert again.frames == 0 and ok_digests(out) == ref  # adopted, not rebuilt
    assert victim in {r.shard for r in read_manifest(out)}
    assert "adopted" in (out / "build.log").read_text()


def test_interrupted_leftovers_are_cleaned_and_unusable_orphans_deleted(synth, tmp_path):
    out = tmp_path / "out"
    build_dataset(cfg(), synth, out)
    ref = ok_digests(out)
    (out / "shards" / "shard-00099.h5.tmp").write_bytes(b"partial")
    (out / "shards" / "shard-00098.h5").write_bytes(b"not hdf5")  # a finished name, but garbage
    rep = verify_build(out)
    assert not rep.ok and any("shard-00098.h5" in p for p in rep.problems)  # finished build: a problem
    again = build_dataset(cfg(), synth, out)
    assert again.frames == 0 and ok_digests(out) == ref
    names = {p.name for p in (out / "shards").iterdir()}
    assert "shard-00099.h5.tmp" not in names and "shard-00098.h5" not in names
    assert verify_build(out).ok
    # the next shards are numbered after every number seen, so no name is ever reused
    assert json.loads((out / "build-state.json").read_text())["next_shard_index"] >= 100


def test_changed_source_rebuilds_only_that_shard(synth, tmp_path):
    src = tmp_path / "src"
    os.system(f"cp -a {synth} {src}")  # noqa: S605  (a copy with its timestamps)
    out = tmp_path / "out"
    build_dataset(cfg(), src, out)
    rows = {r.key: r for r in read_manifest(out)}
    key = next(k for k, r in rows.items() if r.status == "ok")
    folder = Path(rows[key].source_path)
    frame = sorted(folder.iterdir())[3]
    data = bytearray(frame.read_bytes())
    data[len(data) // 2] ^= 0x55  # one changed byte, same size: seen through the modification time
    frame.write_bytes(bytes(data))
    os.utime(frame, ns=(time.time_ns(), time.time_ns() + 10**9))
    again = build_dataset(cfg(), src, out)
    after = {r.key: r for r in read_manifest(out)}
    assert again.clips_kept == 5 and after[key].fingerprint != rows[key].fingerprint
    assert after[key].shard != rows[key].shard
    assert {k: r.frames_sha256 for k, r in after.items() if k != key} == {
        k: r.frames_sha256 for k, r in rows.items() if k != key
    }
    assert verify_build(out).ok
    # a dataset copied elsewhere with its timestamps resumes without rebuilding
    moved = tmp_path / "moved"
    os.system(f"cp -a {src} {moved}")  # noqa: S605
    third = build_dataset(cfg(), moved, out)
    assert third.frames == 0 and third.clips_kept == 6


def test_changed_config_is_refused_then_forced(synth, tmp_path):
    out = tmp_path / "out"
    build_dataset(cfg(), synth, out)
    before = (out / "manifest.csv").read_bytes()
    with pytest.raises(ConfigError, match=r"another pipeline config.*align.crop_size: 64 -> 80.*--force"):
        build_dataset(cfg(**{"align.crop_size": 80}), synth, out)
    assert (out / "manifest.csv").read_bytes() == before  # refused before anything was touched
    # run-time keys (task size, fingerprint mode) are not part of the config: resuming is fine
    assert build_dataset(cfg(**{"build.clips_per_task": 3}), synth, out).frames == 0
    forced = build_dataset(cfg(**{"align.crop_size": 80}), synth, out, force=True)
    assert forced.clips_kept == 0 and forced.clips_ok == 6
    with h5py.File(out / "shards" / read_manifest(out)[0].shard) as f:
        assert f.attrs["crop_size"] == 80


def test_limit_then_full_build_resumes(synth, tmp_path):
    out = tmp_path / "out"
    part = build_dataset(cfg(), synth, out, limit=2)
    assert part.clips_ok == 2 and len(read_manifest(out)) == 2
    full = build_dataset(cfg(), synth, out)
    assert full.clips_kept == 2 and full.clips_ok == 6
    # a later --limit keeps what was built beyond it
    assert build_dataset(cfg(), synth, out, limit=1).clips_ok == 6
