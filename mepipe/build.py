"""``build-dataset``: adapter -> tasks (per-clip processing in workers) -> HDF5 shards + manifest.

The driver (this module) owns the manifest and the resume logic; workers own the pixels:

1. lock ``OUT`` (:mod:`mepipe.engine.lock`; a second build is refused, ``--force`` included);
2. scan the dataset; refuse a pipeline config that differs from the one ``OUT`` was built with
   (``--force`` rebuilds everything);
3. decide what earlier runs left that can be kept (:func:`mepipe.engine.state.reconcile`), write the
   manifest at once (kept clips ``ok``, the rest ``pending``, scan failures ``failed``) and delete
   stale shards;
4. cut the clips to build into tasks and run them (:mod:`mepipe.engine.backends`): each task writes
   its own shard (temporary name, atomic rename) and returns its rows; the manifest is rewritten
   atomically as tasks finish (at most every :data:`MANIFEST_INTERVAL_S` seconds, and at the end),
   so at any moment it lists only complete shards, and a shard finished after the last rewrite is
   adopted by the next run;
5. write ``build-info.json`` (versions, counts, failure reasons, quality flags) and the pair table.

Every line is logged to ``OUT/build.log`` (appended across runs), with progress (rate, ETA) and a
failure-reason summary at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mepipe import __version__
from mepipe.config import PipelineConfig, write_resolved
from mepipe.datasets.base import get_adapter
from mepipe.engine import state as st
from mepipe.engine.backends import make_backend
from mepipe.engine.fingerprint import clip_fingerprint
from mepipe.engine.info import build_info, fix_report_info, log_summary, stored_attrs
from mepipe.engine.lock import BuildLock
from mepipe.engine.runner import run_tasks
from mepipe.engine.tasks import Task, TaskResult, crashed_row, pending_row, plan_tasks, shard_attrs
from mepipe.errors import ConfigError, MepipeError
from mepipe.logs import Progress, get_logger, log_file
from mepipe.records import ClipIssue, ClipRecord, ManifestRow, failed_row
from mepipe.shards.manifest import write_manifest

MANIFEST_INTERVAL_S = float(os.environ.get("MEPIPE_MANIFEST_INTERVAL", "5"))
"""Least seconds between two manifest rewrites while tasks finish (the last one is always written)."""

log = get_logger(__name__)


class BuildInterrupted(MepipeError):
    """The build was stopped (SIGTERM, SIGINT); the manifest lists what was finished."""


@dataclass
class BuildSummary:
    """What one run of :func:`build_dataset` did.

    Attributes:
        clips_ok, clips_failed: rows of the finished manifest (kept ones included).
        clips_kept: ok clips kept from earlier runs (not built again).
        frames: frames stored by this run; ``seconds`` its wall time.
        shards: every shard file of the build.
        fixes_applied, fixes_unmatched: row-anchored fixes of the fix tables that were applied / did
            not fit this copy of the dataset (each one is in ``build-info.json``, ``fix_report``).
    """

    out_dir: Path
    clips_ok: int
    clips_failed: int
    frames: int
    seconds: float
    shards: list[str]
    clips_kept: int = 0
    fixes_applied: int = 0
    fixes_unmatched: int = 0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM (SLURM's scancel or time limit, ``kill``) into :class:`BuildInterrupted` so the
    build stops its workers, leaves a consistent manifest and releases the lock."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise BuildInterrupted(
            f"stopped by signal {signal.Signals(signum).name}; run the same command again to resume"
        )

    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _dedupe(clips: list[ClipRecord]) -> tuple[list[ClipRecord], list[ManifestRow]]:
    """Keep the first clip of each key; later ones become ``duplicate_clip`` failed rows (the adapter
    should report them itself; this guards the shard writer against any adapter that does not)."""
    seen: dict[str, ClipRecord] = {}
    failed: list[ManifestRow] = []
    for c in clips:
        first = seen.get(c.key)
        if first is None:
            seen[c.key] = c
            continue
        failed.append(
            failed_row(
                c,
                ClipIssue(
                    c.dataset,
                    c.clip_id,
                    "duplicate_clip",
                    f"clip {c.clip_id} is listed twice by the {c.dataset} adapter ({first.source_path} and "
                    f"{c.source_path}); the first is built: remove or rename the repeated entry",
                    c.subject,
                    c.source_path,
                ),
            )
        )
    return list(seen.values()), failed


def build_dataset(
    cfg: PipelineConfig,
    source: str | Path | None,
    out: str | Path,
    *,
    workers: int = 1,
    force: bool = False,
    limit: int | None = None,
    backend: str = "local",
    scheduler: str | None = None,
    on_total: Callable[[int], None] | None = None,
    on_clip: Callable[[ManifestRow], None] | None = None,
) -> BuildSummary:
    """Build (or resume building) shards + manifest for the dataset at ``source``.

    Running it again into the same ``out`` resumes: clips stored in complete shards with the same
    config hash and an unchanged source fingerprint are kept, the rest are built.

    Args:
        source: the dataset folder (default ``cfg.dataset.source``).
        workers: worker processes (``local``: 1 runs in this process; ``dask``: LocalCluster size).
        force: delete everything an earlier build left in ``out`` and build from scratch (refused
            while another build holds ``out``).
        limit: build only the first ``limit`` clips (quick looks at a new dataset).
        backend: ``local`` or ``dask``.
        scheduler: ``dask`` only: address (``tcp://HOST:PORT``) or scheduler file of a running cluster.
        on_total, on_clip: progress callbacks (clips to build; each finished row).

    Raises:
        ConfigError: no source, a changed config without ``force``, an unusable backend.
        BuildLockedError: another build holds ``out``.
        BuildInterrupted: stopped by SIGTERM (the manifest lists what was finished).
    """
    from mepipe.decoders import decoder_available

    t0 = time.perf_counter()
    out = Path(out)
    root = source or cfg.dataset.source
    if root is None:
        raise ConfigError("no dataset folder: pass --source DIR (or set dataset.source in the pipeline)")
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(
            f"--source {root} does not exist or is not a folder; pass the dataset folder as distributed"
        )
    missing = decoder_available(cfg.video.decoder)
    if missing:
        raise ConfigError(missing)
    out.mkdir(parents=True, exist_ok=True)
    with BuildLock(out) as lock, log_file(out / "build.log"), _stop_on_signals():
        if lock.taken_over_note:
            log.warning("%s", lock.taken_over_note)
        return _build_locked(cfg, root, out, t0, workers, force, limit, backend, scheduler, on_total, on_clip)


def _build_locked(cfg, root, out, t0, workers, force, limit, backend_name, scheduler, on_total, on_clip):
    digest = cfg.hash()
    log.info(
        "build %s: %s -> %s (backend %s, %d worker(s), config %s, mepipe %s)",
        cfg.name, root, out, backend_name, workers, digest[:12], __version__,
    )  # fmt: skip
    _check_config(cfg, out, force)
    backend = make_backend(backend_name, workers, scheduler, out, root)
    run: _Run | None = None
    try:
        backend.start()
        backend.warm_up(cfg)  # workers start and load their models while the dataset is scanned
        run = _prepare(cfg, root, out, limit, backend_name, workers)
        for r in run.scan_failed:
            if on_clip:
                on_clip(r)
        if on_total:
            on_total(len(run.todo))
        _execute(run, backend, on_clip)
    except BaseException as exc:
        backend.close(cancel=True)
        if run is not None:
            run.stopped(exc)
        raise
    backend.close()
    engine = {
        "backend": backend_name,
        "worker_slots": backend.slots,
        # how much of the task phase the workers spent on clips (the rest: start-up, waiting, the tail)
        "tasks_seconds": round(run.tasks_seconds, 3),
        "worker_busy_seconds": round(run.busy_seconds, 3),
        "worker_busy_share": round(run.busy_seconds / (backend.slots * run.tasks_seconds), 3)
        if run.tasks_seconds > 0
        else None,
    }
    return _finish(run, root, time.perf_counter() - t0, engine)


def _check_config(cfg: PipelineConfig, out: Path, force: bool) -> None:
    """``--force``: delete the earlier build; else refuse one made with another config."""
    if force and st.holds_build(out):
        log.warning("--force: deleting the earlier build in %s", out)
        st.clear_build(out)
    elif st.holds_build(out):
        old_hash, old_resolved = st.previous_config(out)
        if old_hash != cfg.hash():
            changes = st.config_diff(old_resolved, cfg.resolved())
            raise ConfigError(
                f"{out} holds a build made with another pipeline config ({len(changes)} change(s): "
                f"{'; '.join(changes[:8])}{' ...' if len(changes) > 8 else ''}). Resuming would mix "
                "the two: pass --force to rebuild everything with the new config, or choose another --out"
            )


@dataclass
class _Run:
    """One run of a build: the manifest rows the driver owns, the clips to build, the state file."""

    cfg: PipelineConfig
    out: Path
    rows: dict[str, ManifestRow]
    scan_failed: list[ManifestRow]
    todo: list[tuple[ClipRecord, str]]
    state: dict
    attempt: dict
    kept: int
    frames: int = 0
    file_attrs: dict | None = None
    last_write: float = 0.0
    fix_report: list = field(default_factory=list)  # the scan's FixOutcome list
    busy_seconds: float = 0.0  # sum of the finished tasks' own seconds (worker time spent on clips)
    tasks_seconds: float = 0.0  # wall time from the first submitted task to the last result

    def manifest_rows(self) -> list[ManifestRow]:
        return list(self.rows.values()) + self.scan_failed

    def write_manifest(self) -> None:
        write_manifest(self.manifest_rows(), self.out)
        self.last_write = time.monotonic()

    def reserve(self, n: int) -> int:
        """Reserve ``n`` shard numbers (recorded before any task uses them); returns the first."""
        start = self.state["next_shard_index"]
        self.state["next_shard_index"] = start + n
        st.write_state(self.out, self.state)
        return start

    def stopped(self, exc: BaseException) -> None:
        self.write_manifest()
        self.attempt["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.attempt["result"] = f"stopped: {type(exc).__name__}: {exc}"[:500]
        st.write_state(self.out, self.state)
        pending = sum(r.status == "pending" for r in self.rows.values())
        log.error(
            "build stopped (%s); %d clip(s) still pending: run the same command again to resume",
            exc or type(exc).__name__, pending,
        )  # fmt: skip


def _prepare(cfg, root: Path, out: Path, limit, backend_name: str, workers: int) -> _Run:
    """Scan, decide what is kept (:func:`mepipe.engine.state.reconcile`), write the state and the
    first manifest (kept clips ok, the rest pending), then delete what is no longer listed."""
    state = st.read_state(out)
    if state.get("mepipe_version") not in (None, __version__):
        log.warning(
            "this build was started with mepipe %s; its stored clips are kept (pass --force to rebuild "
            "them with %s)", state["mepipe_version"], __version__,
        )  # fmt: skip
    scan = get_adapter(cfg.dataset.adapter, root, **cfg.dataset.options).scan()
    clips, duplicates = _dedupe(scan.clips)
    planned_keys = {c.key for c in (clips[:limit] if limit else clips)}
    scan_failed = [failed_row(c, i) for c, i in scan.failures] + duplicates
    write_resolved(cfg, out)
    old_ok = _earlier_ok_keys(out)
    candidates = [c for c in clips if c.key in planned_keys or c.key in old_ok]
    fingerprints = {c.key: clip_fingerprint(c, root, cfg.build.fingerprint) for c in candidates}
    rec = st.reconcile(out, cfg.hash(), fingerprints)
    for note in rec.notes:
        log.info("resume: %s", note)
    rows: dict[str, ManifestRow] = {}
    todo: list[tuple[ClipRecord, str]] = []
    for c in candidates:
        if c.key in rec.kept:
            rows[c.key] = rec.kept[c.key]
        elif c.key in planned_keys:
            rows[c.key] = pending_row(c, fingerprints[c.key])
            todo.append((c, fingerprints[c.key]))
    attempt = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "backend": backend_name,
        "workers": workers,
        "kept": len(rec.kept),
        "to_build": len(todo),
    }
    state.update(
        {
            "status": "running",
            "pipeline": cfg.name,
            "config_hash": cfg.hash(),
            "mepipe_version": __version__,
            "source": str(root.resolve()),
        }
    )
    state.setdefault("attempts", []).append(attempt)
    state["next_shard_index"] = max(int(state.get("next_shard_index", 0)), rec.max_index + 1)
    st.write_state(out, state)
    run = _Run(
        cfg,
        out,
        rows,
        scan_failed,
        todo,
        state,
        attempt,
        kept=sum(r.status == "ok" for r in rows.values()),
        fix_report=list(scan.fix_report),
    )
    run.write_manifest()
    for path in rec.delete:  # only now: the manifest no longer lists them
        path.unlink(missing_ok=True)
    if todo or rec.delete:  # a pair table of the earlier run may point at what is rebuilt now
        for name in ("pairs.csv", "pairs.json"):
            (out / name).unlink(missing_ok=True)
    log.info(
        "%d clip(s) in the dataset: %d to build, %d kept from earlier runs, %d scan failure(s)%s",
        len(clips), len(todo), run.kept, len(scan_failed), f" (--limit {limit})" if limit else "",
    )  # fmt: skip
    for r in scan_failed:
        log.info("failed %s: %s: %s", r.key, r.reason, r.message)
    return run


def _execute(run: _Run, backend, on_clip) -> None:
    """Plan the tasks and run them; rows replace the pending ones as tasks finish."""
    cfg = run.cfg
    tasks = plan_tasks(
        run.todo,
        first_index=run.state["next_shard_index"],
        slots=backend.slots,
        max_clips=cfg.shards.max_clips,
        clips_per_task=cfg.build.clips_per_task,
        out_dir=str(run.out),
        cfg=cfg,
    )
    run.reserve(len(tasks))
    counts: Counter[str] = Counter()
    with Progress(f"build {cfg.name}", len(run.todo), unit="clips") as progress:

        def finished(result: TaskResult) -> None:
            for r in result.rows:
                run.rows[r.key] = r
                if r.status == "failed":
                    log.info("failed %s: %s: %s", r.key, r.reason, r.message)
                if on_clip:
                    on_clip(r)
            run.frames += result.frames
            run.busy_seconds += result.seconds
            run.file_attrs = run.file_attrs or result.file_attrs
            log.debug(
                "task %05d: %d clip(s), %d frame(s) in %.1f s on %s -> %s",
                result.index, len(result.rows), result.frames, result.seconds, result.worker,
                ", ".join(result.shards) or "no shard",
            )  # fmt: skip
            if time.monotonic() - run.last_write >= MANIFEST_INTERVAL_S:
                run.write_manifest()
            counts.update(r.status for r in result.rows)
            progress.advance(len(result.rows), info=f"{counts['ok']} ok, {counts['failed']} failed")

        def crashed(task: Task, why: str) -> None:
            for c, fp in zip(task.clips, task.fingerprints, strict=True):
                run.rows[c.key] = crashed_row(c, fp, why)
                log.warning("failed %s: worker_crashed: %s", c.key, why)
            counts["failed"] += len(task.clips)
            progress.advance(len(task.clips))

        t0 = time.perf_counter()
        run_tasks(backend, tasks, finished, crashed, run.reserve)
        run.tasks_seconds = time.perf_counter() - t0


def _finish(run: _Run, root: Path, seconds: float, engine: dict) -> BuildSummary:
    """The last manifest, build-info.json, the state marked complete, the summary, the pair table."""
    out, cfg = run.out, run.cfg
    run.write_manifest()
    attrs = run.file_attrs or stored_attrs(out) or shard_attrs(cfg)
    info = build_info(cfg, root, run.manifest_rows(), run.frames, seconds, engine, run.kept, run.state, attrs)
    info.update(fix_report_info(run.fix_report))
    (out / "build-info.json").write_text(json.dumps(info, indent=2) + "\n")
    if (
        cfg.flow.enabled
    ):  # the workers stored each clip's flow (mepipe.process): record it as `mepipe flow` does
        from mepipe.flow_stage import write_flow_info

        write_flow_info(out, cfg.flow, info["clips_ok"])
    run.attempt["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    run.attempt["result"] = "complete"
    run.state["status"] = "complete"
    st.write_state(out, run.state)
    log_summary(info)
    if cfg.pairs.write:
        from mepipe.pairs import write_pair_table

        write_pair_table(out, cfg.pairs, seed=cfg.pairs.seed if cfg.pairs.seed is not None else cfg.seed)
    shards = sorted(p.name for p in (out / "shards").glob("shard-*.h5"))
    return BuildSummary(
        out,
        info["clips_ok"],
        info["clips_failed"],
        run.frames,
        seconds,
        shards,
        run.kept,
        info["fixes_applied"],
        info["fixes_unmatched"],
    )


def _earlier_ok_keys(out: Path) -> set[str]:
    from mepipe.errors import ShardError
    from mepipe.shards.manifest import MANIFEST_NAME, read_manifest

    if not (out / MANIFEST_NAME).is_file():
        return set()
    try:
        return {r.key for r in read_manifest(out) if r.status == "ok"}
    except ShardError:
        return set()
