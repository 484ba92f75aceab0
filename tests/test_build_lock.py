"""The lock on OUT (a second build, with or without --force, is refused naming the running one; a
stale lock is taken over), workers that end with the build process, and SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mepipe.build import build_dataset
from mepipe.engine.lock import BuildLock, BuildLockedError
from mepipe.shards import read_manifest, verify_build
from tests.build_fixtures import (
    alive,
    descendants,
    env,
    fast_cfg,
    make_synth,
    ok_digests,
    run_build,
    start_build,
    wait_for,
)

HOLD = """
import sys, time
from mepipe.engine.lock import BuildLock
with BuildLock(sys.argv[1], command="mepipe build-dataset (test holder)"):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return make_synth(tmp_path_factory.mktemp("lock") / "casme2", subjects=2, clips=3)


def cfg():
    return fast_cfg()


def test_second_build_is_refused_with_or_without_force(synth, tmp_path):
    out = tmp_path / "out"
    build_dataset(cfg(), synth, out)
    before = (out / "manifest.csv").read_bytes()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], env=env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        for force in (False, True):
            with pytest.raises(BuildLockedError) as err:
                build_dataset(cfg(), synth, out, force=force)
            msg = str(err.value)
            assert f"pid {holder.pid}" in msg and socket.gethostname() in msg and "since 20" in msg
            assert "--force does not override" in msg
        res = run_build(synth, out, "--force")  # the command line: exit 2, the message, no traceback
        assert res.returncode == 2 and f"pid {holder.pid}" in res.stderr and "Traceback" not in res.stderr
        assert (out / "manifest.csv").read_bytes() == before and verify_build(out).ok
    finally:
        holder.kill()
        holder.wait()
    # the holder died (SIGKILL): its lock is taken over, the build resumes
    assert build_dataset(cfg(), synth, out).clips_kept == 6
    assert "took over the lock" in (out / "build.log").read_text()


def test_lock_of_another_host_with_fresh_heartbeat_is_respected(tmp_path):
    lock = tmp_path / "build.lock"
    tmp_path.mkdir(exist_ok=True)
    holder = {"pid": 4242, "host": "node-elsewhere", "started": "2026-12-01T09:00:00+00:00", "command": "x"}
    lock.write_text(json.dumps({**holder, "heartbeat_unix": time.time() - 10}))
    with pytest.raises(BuildLockedError, match=r"pid 4242 on host node-elsewhere.*heartbeat 1\d s ago"):
        BuildLock(tmp_path).acquire()
    lock.write_text(json.dumps({**holder, "heartbeat_unix": time.time() - 3600}))
    with BuildLock(tmp_path) as taken:  # an hour without heartbeat: stale, taken over
        assert taken.taken_over["host"] == "node-elsewhere"
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert json.loads(lock.read_text())["released"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "dask"])
def test_workers_end_with_the_build_process(synth, tmp_path, backend):
    if backend == "dask":
        pytest.importorskip("distributed")
    out = tmp_path / "out"
    proc = start_build(synth, out, "--workers", "2", "--backend", backend)
    try:
        assert wait_for(lambda: len([p for p in descendants(proc.pid) if alive(p)]) >= 2, 60)
        assert wait_for(lambda: (out / "manifest.csv").exists(), 60)
        workers = [p for p in descendants(proc.pid) if alive(p)]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        t = time.monotonic()
        assert wait_for(lambda: not any(alive(p) for p in workers), 5), [p for p in workers if alive(p)]
        gone_after = time.monotonic() - t
    finally:
        proc.kill()
    assert gone_after < 5
    assert verify_build(out).ok


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_the_next_run_finishes(synth, tmp_path):
    out = tmp_path / "out"
    proc = start_build(synth, out, "--workers", "2", MEPIPE_MANIFEST_INTERVAL="0")
    assert wait_for(lambda: (out / "manifest.csv").exists(), 60)
    time.sleep(0.5)
    workers = [p for p in descendants(proc.pid) if alive(p)]
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=30)
    if proc.returncode == 0:  # the build was already done when the signal came
        assert verify_build(out).complete
    else:
        assert proc.returncode == 130 and "stopped by signal SIGTERM" in output and "Traceback" not in output
        assert wait_for(lambda: not any(alive(p) for p in workers), 5)
        state = json.loads((out / "build-state.json").read_text())
        assert "SIGTERM" in state["attempts"][-1]["result"]
        assert json.loads((out / "build.lock").read_text())["released"]
        rep = verify_build(out)
        assert rep.ok
    assert build_dataset(cfg(), synth, out).clips_ok == 6
    ref = tmp_path / "ref"
    build_dataset(cfg(), synth, ref)
    assert ok_digests(out) == ok_digests(ref)
    assert all(r.status == "ok" for r in read_manifest(out))
