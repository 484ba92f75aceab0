"""Dask backend against real components: a ``dask scheduler`` and ``dask worker`` started as separate
processes on 127.0.0.1, and a LocalCluster; same ok clips and frames as the local backend. Also the
runner's handling of workers that crash (a fake backend)."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import shutil
import subprocess
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from mepipe.build import build_dataset
from mepipe.engine.runner import run_tasks
from mepipe.engine.tasks import TaskResult, plan_tasks
from mepipe.shards import verify_build
from tests.build_fixtures import env, fast_cfg, make_synth, ok_digests, run_build

distributed = pytest.importorskip("distributed")
DASK = shutil.which("dask") or str(Path(__import__("sys").executable).with_name("dask"))


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return make_synth(tmp_path_factory.mktemp("dask") / "casme2", subjects=2, clips=3)


@pytest.fixture(scope="module")
def reference(synth, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "out"
    build_dataset(fast_cfg(), synth, out, workers=1)
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and two single-threaded workers, each its own process, loopback only."""
    folder = tmp_path_factory.mktemp("cluster")
    sched_file = folder / "scheduler.json"
    procs = []
    try:
        procs.append(
            subprocess.Popen(
                [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                 "--scheduler-file", str(sched_file)],
                env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        end = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < end:
            time.sleep(0.1)
        assert sched_file.exists(), "dask scheduler did not start"
        procs.append(
            subprocess.Popen(
                [DASK, "worker", "--scheduler-file", str(sched_file), "--nworkers", "2", "--nthreads", "1",
                 "--host", "127.0.0.1", "--no-dashboard", "--memory-limit", "3GiB", "--death-timeout", "60"],
                env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        with distributed.Client(scheduler_file=str(sched_file), timeout="60s") as c:
            c.wait_for_workers(2, timeout=120)
            address = c.scheduler.address
        yield sched_file, address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.mark.slow
def test_existing_cluster_by_scheduler_file_and_address(synth, reference, cluster, tmp_path):
    sched_file, address = cluster
    assert address.startswith("tcp://127.0.0.1:")
    out = tmp_path / "by-file"
    s = build_dataset(fast_cfg(), synth, out, backend="dask", scheduler=str(sched_file))
    assert s.clips_ok == 6 and ok_digests(out) == ok_digests(reference)
    assert verify_build(out).ok
    info = json.loads((out / "build-info.json").read_text())
    engine = info["engine"]
    assert (engine["backend"], engine["worker_slots"]) == ("dask", 2)
    assert 0 < engine["worker_busy_share"] <= 1.0  # busy seconds over 2 slots x the task phase
    # the tasks ran in the worker processes, not in this one
    log = (out / "build.log").read_text()
    assert f":{os.getpid()} ->" not in log and "task 00000" in log
    out2 = tmp_path / "by-address"  # the command line, with the tcp:// address
    res = run_build(synth, out2, "--backend", "dask", "--scheduler", address)
    assert res.returncode == 0, res.stdout + res.stderr
    assert ok_digests(out2) == ok_digests(reference)


@pytest.mark.slow
def test_local_cluster_backend(synth, reference, tmp_path):
    out = tmp_path / "lc"
    s = build_dataset(fast_cfg(), synth, out, backend="dask", workers=2, scheduler=None)
    assert s.clips_ok == 6 and ok_digests(out) == ok_digests(reference) and verify_build(out).ok
    assert not (out / "dask-scratch").exists()  # the workers' scratch space was inside OUT, and is gone


def test_bad_scheduler_and_backend_flags_are_clear_errors(synth, tmp_path, monkeypatch):
    from mepipe.errors import ConfigError

    monkeypatch.setenv("MEPIPE_DASK_CONNECT_TIMEOUT", "2s")
    with pytest.raises(ConfigError, match="--scheduler needs --backend dask"):
        build_dataset(fast_cfg(), synth, tmp_path / "a", scheduler="tcp://127.0.0.1:1")
    with pytest.raises(ConfigError, match="unknown --backend 'ray'"):
        build_dataset(fast_cfg(), synth, tmp_path / "b", backend="ray")
    with pytest.raises(ConfigError, match="cannot connect to a Dask scheduler"):
        build_dataset(fast_cfg(), synth, tmp_path / "c", backend="dask", scheduler="tcp://127.0.0.1:9")
    assert not (tmp_path / "c" / "manifest.csv").exists()  # refused before the dataset was touched


class CrashingBackend:
    """In-process backend whose 'worker' dies on the clips in ``poison`` (a fake, for the runner)."""

    name = "local"
    slots = 2
    crash_types = (BrokenProcessPool,)

    def __init__(self, poison: set[str]) -> None:
        self.poison, self.submitted = poison, []

    def submit(self, task):
        self.submitted.append(task.keys())
        f: cf.Future = cf.Future()
        if self.poison & set(task.keys()):
            f.set_exception(BrokenProcessPool("a child process terminated abruptly"))
        else:
            f.set_result(TaskResult(task.index, [], [], 0, 0.0, "fake"))
        return f

    def wait(self, futures, timeout):
        return set(futures)

    def recover(self):
        pass


def test_a_clip_that_crashes_its_worker_is_isolated_and_failed(synth):
    from mepipe.datasets import get_adapter

    clips = get_adapter("casme2", synth).scan().clips
    todo = [(c, f"fp{k}") for k, c in enumerate(clips)]
    tasks = plan_tasks(todo, first_index=0, slots=1, max_clips=3, clips_per_task=3, out_dir="x",
                       cfg=fast_cfg())  # fmt: skip
    poison = clips[4].key
    backend = CrashingBackend({poison})
    done, crashed, counter = [], [], [100]

    def reserve(n):
        counter[0] += n
        return counter[0] - n

    run_tasks(backend, tasks, done.append, lambda t, why: crashed.append((t.keys(), why)), reserve)
    assert [k for k, _ in crashed] == [[poison]] and "terminated abruptly" in crashed[0][1]
    # task 0 ran once; task 1 twice whole, then clip by clip: the poison clip fails, the others are built
    assert sorted(r.index for r in done) == [0, 100, 102]
    assert backend.submitted.count(tasks[1].keys()) == 2 and backend.submitted.count([poison]) == 1


def test_workers_that_die_before_any_task_stop_the_build_with_a_clear_error(synth):
    from mepipe.datasets import get_adapter
    from mepipe.engine.runner import WorkersDieError

    clips = get_adapter("casme2", synth).scan().clips
    tasks = plan_tasks(
        [(c, "fp") for c in clips], first_index=0, slots=2, max_clips=2, out_dir="x", cfg=fast_cfg()
    )
    backend = CrashingBackend({c.key for c in clips})  # every task kills its worker
    with pytest.raises(WorkersDieError, match=r"died 3 times before finishing any task.*--workers 1"):
        run_tasks(backend, tasks, lambda r: None, lambda t, w: None, lambda n: 100)


def test_tasks_shrink_towards_the_end_so_no_worker_idles_long(synth):
    """Guided sizes with several workers: every clip once, in order, at most max_clips per task, sizes
    never growing and ending with single clips; one worker or an explicit size: equal tasks."""
    from mepipe.datasets import get_adapter

    clip = get_adapter("casme2", synth).scan().clips[0]
    todo = [(clip, f"fp{k}") for k in range(160)]

    def sizes(**kw):
        tasks = plan_tasks(todo, first_index=5, out_dir="x", cfg=fast_cfg(), **kw)
        assert [t.index for t in tasks] == list(range(5, 5 + len(tasks)))
        assert [fp for t in tasks for fp in t.fingerprints] == [fp for _, fp in todo]
        return [len(t.clips) for t in tasks]

    guided = sizes(slots=2, max_clips=16)
    assert max(guided) == 16 and guided == sorted(guided, reverse=True) and guided[-3:] == [1, 1, 1]
    assert sizes(slots=1, max_clips=16) == [16] * 10
    assert sizes(slots=2, max_clips=16, clips_per_task=10) == [10] * 16
