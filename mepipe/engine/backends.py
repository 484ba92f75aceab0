"""Where tasks run: in this process, in local worker processes, or on a Dask cluster.

Every backend takes :class:`~mepipe.engine.tasks.Task` objects and gives back futures of
:class:`~mepipe.engine.tasks.TaskResult`; :func:`mepipe.engine.runner.run_tasks` drives them all the
same way. Tasks carry paths and records only: frames are read and written by the worker itself.

* ``local``, 1 worker: tasks run in the calling process, one after the other.
* ``local``, N workers: a pool of N worker processes (``spawn``: no inherited HDF5 handles or
  locks). Each worker asks the kernel to kill it when the build process dies
  (``prctl(PR_SET_PDEATHSIG)`` on Linux) and also polls its parent once a second, so ``kill -9`` of
  the build leaves no worker behind for more than about a second.
* ``dask``: a ``LocalCluster`` of N single-threaded worker processes, or an existing cluster given by
  its address (``tcp://HOST:PORT``) or scheduler file (``dask scheduler --scheduler-file``,
  dask-jobqueue). Before the first task every worker checks that it sees ``OUT`` and the dataset
  (a shared filesystem) and runs the same mepipe version.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import shutil
import signal
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from mepipe.errors import ConfigError
from mepipe.logs import get_logger

log = get_logger(__name__)

DASK_SCRATCH = "dask-scratch"
"""Working folder of LocalCluster workers inside OUT (removed when the cluster closes)."""


class InProcessBackend:
    """Run each task in the calling process (``--workers 1``)."""

    name = "local"
    slots = 1
    crash_types: tuple[type[BaseException], ...] = ()

    def start(self) -> None:
        pass

    def submit(self, task):
        from mepipe.engine.tasks import run_task

        fut: cf.Future = cf.Future()
        try:
            fut.set_result(run_task(task))
        except Exception as exc:  # noqa: BLE001  (handed to the runner like a worker's error)
            fut.set_exception(exc)
        return fut

    def wait(self, futures, timeout: float):
        return {f for f in futures if f.done()}

    def warm_up(self, cfg) -> None:
        pass  # the backends load on the first clip, in this process

    def recover(self) -> None:
        pass

    def close(self, cancel: bool = False) -> None:
        pass


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def worker_init(parent: int) -> None:
    """Initialiser of local worker processes: die with the build process, leave Ctrl-C to it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # not Linux: the watchdog below still ends the worker
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="mepipe-parent-watch", daemon=True).start()


class ProcessPoolBackend:
    """``--workers N`` local worker processes."""

    name = "local"
    crash_types: tuple[type[BaseException], ...] = (BrokenProcessPool,)

    def __init__(self, workers: int) -> None:
        self.slots = workers
        self._pool: cf.ProcessPoolExecutor | None = None

    def start(self) -> None:
        import multiprocessing as mp

        self._pool = cf.ProcessPoolExecutor(
            max_workers=self.slots,
            mp_context=mp.get_context("spawn"),
            initializer=worker_init,
            initargs=(os.getpid(),),
        )

    def submit(self, task):
        from mepipe.engine.tasks import run_task

        assert self._pool is not None
        return self._pool.submit(run_task, task)

    def warm_up(self, cfg) -> None:
        """Start every worker now and load the face backends in it, while the driver scans."""
        from mepipe.engine.tasks import warm_up

        assert self._pool is not None
        self._warm = [self._pool.submit(warm_up, cfg) for _ in range(self.slots)]

    def wait(self, futures, timeout: float):
        done, _ = cf.wait(futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return done

    def worker_pids(self) -> list[int]:
        procs = getattr(self._pool, "_processes", None) or {}
        return [p.pid for p in procs.values() if p.pid]

    def recover(self) -> None:
        """After a worker died the pool is broken: replace it (idempotent)."""
        if self._pool is not None and getattr(self._pool, "_broken", False):
            self.close(cancel=True)
            self.start()

    def close(self, cancel: bool = False) -> None:
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        if cancel:  # stop now: running tasks are lost (their .tmp shards are cleaned up by the next run)
            procs = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for p in procs:
                if p.is_alive():
                    p.terminate()
            for p in procs:
                p.join(timeout=5)
        else:
            pool.shutdown(wait=True)


def _worker_probe(out_dir: str, source: str, token: str) -> dict:
    """Runs on every Dask worker: can it see OUT (the probe file) and the dataset, which mepipe?"""
    import mepipe

    probe = Path(out_dir) / f".probe-{token}"
    try:
        sees_out = probe.read_text() == token
    except OSError:
        sees_out = False
    return {"mepipe": mepipe.__version__, "out": sees_out, "source": os.path.isdir(source)}


class DaskBackend:
    """Tasks on a Dask cluster: a new ``LocalCluster`` or an existing one (``scheduler``).

    Args:
        workers: worker processes of the LocalCluster (ignored with ``scheduler``).
        scheduler: ``tcp://HOST:PORT`` of a running scheduler, or the path of its scheduler file.
        out_dir, source: checked on every worker before the first task.
    """

    name = "dask"

    def __init__(self, workers: int, scheduler: str | None, out_dir: Path, source: Path) -> None:
        try:
            import distributed
        except ImportError:
            raise ConfigError("--backend dask needs dask.distributed: pip install 'mepipe[dask]'") from None
        self._distributed = distributed
        self.crash_types = (distributed.KilledWorker,)
        self.workers, self.scheduler = workers, scheduler
        self.out_dir, self.source = out_dir, source
        self.cluster = None
        self.client = None
        self.slots = workers
        self._submitted: list = []

    def start(self) -> None:
        d = self._distributed
        if self.scheduler:
            target = self.scheduler
            timeout = os.environ.get("MEPIPE_DASK_CONNECT_TIMEOUT", "60s")
            try:
                if os.path.isfile(target):
                    self.client = d.Client(scheduler_file=target, timeout=timeout)
                else:
                    self.client = d.Client(target, timeout=timeout)
            except (OSError, TimeoutError) as exc:
                raise ConfigError(
                    f"--scheduler {target}: cannot connect to a Dask scheduler ({exc}); start one with "
                    "`dask scheduler` (see docs/cluster.md) or check the address"
                ) from None
            try:
                self.client.wait_for_workers(1, timeout=120)
            except TimeoutError:
                self.close()
                raise ConfigError(
                    f"the Dask scheduler {target} has no worker after 120 s; start workers with "
                    f"`dask worker {target} --nthreads 1` (see docs/cluster.md)"
                ) from None
        else:
            import logging

            self.cluster = d.LocalCluster(
                n_workers=self.workers,
                local_directory=str(self.out_dir / DASK_SCRATCH),  # nothing written outside OUT
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=":0",  # a free port: never clash with another cluster's 8787
                silence_logs=logging.ERROR,
            )
            self.client = d.Client(self.cluster)
        self.slots = max(1, sum(self.client.nthreads().values()))
        self._check_workers()
        log.info("dask: %d worker thread(s) at %s", self.slots, self.client.scheduler.address)

    def _check_workers(self) -> None:
        import secrets

        import mepipe

        token = secrets.token_hex(8)
        probe = self.out_dir / f".probe-{token}"
        probe.write_text(token)
        try:
            seen = self.client.run(_worker_probe, str(self.out_dir), str(self.source), token)
        finally:
            probe.unlink(missing_ok=True)
        blind = [w for w, r in seen.items() if not r["out"]]
        no_data = [w for w, r in seen.items() if not r["source"]]
        other = {w: r["mepipe"] for w, r in seen.items() if r["mepipe"] != mepipe.__version__}
        problems = []
        if blind:
            problems.append(f"worker(s) {', '.join(sorted(blind))} cannot see {self.out_dir}")
        if no_data:
            problems.append(f"worker(s) {', '.join(sorted(no_data))} cannot see the dataset {self.source}")
        if other:
            problems.append(f"worker(s) run another mepipe version: {other} (here {mepipe.__version__})")
        if problems:
            self.close()
            raise ConfigError(
                "; ".join(problems) + ". Workers write the shards themselves: --out and --source must "
                "be on a filesystem every worker mounts at the same path, and every worker must run "
                "the same mepipe (see docs/cluster.md)"
            )

    def submit(self, task):
        from mepipe.engine.tasks import run_task

        fut = self.client.submit(run_task, task, key=f"mepipe-{task.name}-{os.getpid()}", pure=False)
        self._submitted.append(fut)
        return fut

    def warm_up(self, cfg) -> None:
        """Load the face backends on every worker now (in the background), while the driver scans."""
        from mepipe.engine.tasks import warm_up

        self._warm = [
            self.client.submit(warm_up, cfg, workers=[w], allow_other_workers=False, pure=False)
            for w in self.client.nthreads()
        ]

    def wait(self, futures, timeout: float):
        try:
            done, _ = self._distributed.wait(list(futures), timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return set()
        return set(done)

    def recover(self) -> None:
        pass

    def close(self, cancel: bool = False) -> None:
        if self.client is not None:
            try:
                if cancel:  # tasks already running on a worker still finish (Dask cannot stop them)
                    self.client.cancel([f for f in self._submitted if not f.done()], force=True)
                self.client.close()
            except Exception:  # noqa: BLE001  (the scheduler may already be gone)
                pass
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None
            shutil.rmtree(self.out_dir / DASK_SCRATCH, ignore_errors=True)


def make_backend(name: str, workers: int, scheduler: str | None, out_dir: Path, source: Path):
    """The backend for ``--backend NAME --workers N [--scheduler ADDRESS]``."""
    if name == "local":
        if scheduler:
            raise ConfigError("--scheduler needs --backend dask")
        return InProcessBackend() if workers <= 1 else ProcessPoolBackend(workers)
    if name == "dask":
        return DaskBackend(workers, scheduler, out_dir, source)
    raise ConfigError(f"unknown --backend {name!r}; use local or dask")
