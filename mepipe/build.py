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
from dataclasses import dataclass
from pathlib import Path

from mepipe import __version__
from mepipe.config import PipelineConfig, write_resolved
from mepipe.datasets.base import get_adapter
from mepipe.engine import state as st
from mepipe.engine.backends import make_backend
from mepipe.engine.fingerprint import clip_fingerprint
from mepipe.engine.lock import BuildLock
from mepipe.engine.runner import run_tasks
from mepipe.engine.tasks import Task, TaskResult, crashed_row, pending_row, plan_tasks
from mepipe.errors import ConfigError, MepipeError
from mepipe.logs import Progress, get_logger, log_file
from mepipe.provenance import git_commit, library_versions
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
    """

    out_dir: Path
    clips_ok: int
    clips_failed: int
    frames: int
    seconds: float
    shards: list[str]
    clips_kept: int = 0

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


def _file_attrs(cfg: PipelineConfig) -> dict[str, str | int]:
    from mepipe.face.backends import get_detector, get_landmarker

    det, lmk = get_detector(cfg.face.detector, cfg.face.upsample), get_landmarker(cfg.face.landmarker)
    return {
        "pipeline": cfg.name,
        "config_hash": cfg.hash(),
        "backends": json.dumps({"detector": det.name, "landmarker": lmk.name}),
        "model_files": json.dumps({**det.model_files(), **lmk.model_files()}, sort_keys=True),
        "crop_size": cfg.align.crop_size,
        "align_mode": cfg.align.mode,
        "frame_encoding": cfg.storage.encoding,
        "video_decoder": cfg.video.decoder,
    }


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
    if force and st.holds_build(out):
        log.warning("--force: deleting the earlier build in %s", out)
        st.clear_build(out)
    elif st.holds_build(out):
        old_hash, old_resolved = st.previous_config(out)
        if old_hash != digest:
            changes = st.config_diff(old_resolved, cfg.resolved())
            raise ConfigError(
                f"{out} holds a build made with another pipeline config ({len(changes)} change(s): "
                f"{'; '.join(changes[:8])}{' ...' if len(changes) > 8 else ''}). Resuming would mix "
                "the two: pass --force to rebuild everything with the new config, or choose another --out"
            )
    state = st.read_state(out)
    if state.get("mepipe_version") not in (None, __version__):
        log.warning(
            "this build was started with mepipe %s; its stored clips are kept (pass --force to rebuild "
            "them with %s)", state["mepipe_version"], __version__,
        )  # fmt: skip
    adapter = get_adapter(cfg.dataset.adapter, root, **cfg.dataset.options)
    scan = adapter.scan()
    clips, duplicates = _dedupe(scan.clips)
    planned = clips[:limit] if limit else clips
    scan_failed = [failed_row(c, i) for c, i in scan.failures] + duplicates
    write_resolved(cfg, out)

    old_ok = _earlier_ok_keys(out)
    planned_keys = {c.key for c in planned}
    candidates = [c for c in clips if c.key in planned_keys or c.key in old_ok]
    fingerprints = {c.key: clip_fingerprint(c, root, cfg.build.fingerprint) for c in candidates}
    rec = st.reconcile(out, digest, fingerprints)
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

    def manifest_rows() -> list[ManifestRow]:
        return list(rows.values()) + scan_failed

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
            "config_hash": digest,
            "mepipe_version": __version__,
            "source": str(root.resolve()),
        }
    )
    state.setdefault("attempts", []).append(attempt)
    state["next_shard_index"] = max(int(state.get("next_shard_index", 0)), rec.max_index + 1)
    st.write_state(out, state)
    write_manifest(manifest_rows(), out)
    for path in rec.delete:  # only now: the manifest no longer lists them
        path.unlink(missing_ok=True)

    def reserve(n: int) -> int:
        start = state["next_shard_index"]
        state["next_shard_index"] = start + n
        st.write_state(out, state)
        return start

    kept = sum(r.status == "ok" for r in rows.values())
    log.info(
        "%d clip(s) in the dataset: %d to build, %d kept from earlier runs, %d scan failure(s)%s",
        len(clips), len(todo), kept, len(scan_failed),
        f" (--limit {limit})" if limit else "",
    )  # fmt: skip
    for r in scan_failed:
        log.info("failed %s: %s: %s", r.key, r.reason, r.message)
        if on_clip:
            on_clip(r)
    if on_total:
        on_total(len(todo))
    built = {"frames": 0, "last_write": time.monotonic()}
    counts: Counter[str] = Counter()
    backend = None
    try:
        backend = make_backend(backend_name, workers, scheduler, out, root)
        file_attrs = _file_attrs(cfg)
        backend.start()
        tasks = plan_tasks(
            todo,
            first_index=reserve(0),
            slots=backend.slots,
            max_clips=cfg.shards.max_clips,
            clips_per_task=cfg.build.clips_per_task,
            out_dir=str(out),
            cfg=cfg,
            file_attrs=file_attrs,
        )
        reserve(len(tasks))
        with Progress(f"build {cfg.name}", len(todo), unit="clips") as progress:

            def finished(result: TaskResult) -> None:
                for r in result.rows:
                    rows[r.key] = r
                    if r.status == "failed":
                        log.info("failed %s: %s: %s", r.key, r.reason, r.message)
                    if on_clip:
                        on_clip(r)
                built["frames"] += result.frames
                log.debug(
                    "task %05d: %d clip(s), %d frame(s) in %.1f s on %s -> %s",
                    result.index, len(result.rows), result.frames, result.seconds, result.worker,
                    ", ".join(result.shards) or "no shard",
                )  # fmt: skip
                now = time.monotonic()
                if now - built["last_write"] >= MANIFEST_INTERVAL_S:
                    write_manifest(manifest_rows(), out)
                    built["last_write"] = now
                counts.update(r.status for r in result.rows)
                progress.advance(len(result.rows), info=f"{counts['ok']} ok, {counts['failed']} failed")

            def crashed(task: Task, why: str) -> None:
                for c, fp in zip(task.clips, task.fingerprints, strict=True):
                    rows[c.key] = crashed_row(c, fp, why)
                    log.warning("failed %s: worker_crashed: %s", c.key, why)
                counts["failed"] += len(task.clips)
                progress.advance(len(task.clips))

            run_tasks(backend, tasks, finished, crashed, reserve)
    except BaseException as exc:
        if backend is not None:
            backend.close(cancel=True)
        write_manifest(manifest_rows(), out)
        attempt["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        attempt["result"] = f"stopped: {type(exc).__name__}: {exc}"[:500]
        st.write_state(out, state)
        pending = sum(r.status == "pending" for r in rows.values())
        log.error(
            "build stopped (%s); %d clip(s) still pending: run the same command again to resume",
            exc or type(exc).__name__, pending,
        )  # fmt: skip
        raise
    backend.close()
    write_manifest(manifest_rows(), out)
    seconds = time.perf_counter() - t0
    final = manifest_rows()
    engine = {"backend": backend_name, "worker_slots": backend.slots}
    info = _build_info(cfg, root, final, built["frames"], seconds, engine, kept, state, file_attrs)
    (out / "build-info.json").write_text(json.dumps(info, indent=2) + "\n")
    attempt["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    attempt["result"] = "complete"
    state["status"] = "complete"
    st.write_state(out, state)
    _log_summary(info)
    if cfg.pairs.write:
        from mepipe.pairs import write_pair_table

        write_pair_table(out, cfg.pairs, seed=cfg.pairs.seed if cfg.pairs.seed is not None else cfg.seed)
    shards = sorted(p.name for p in (out / "shards").glob("shard-*.h5"))
    return BuildSummary(
        out, info["clips_ok"], info["clips_failed"], built["frames"], seconds, shards, clips_kept=kept
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


def qa_counts(rows: list[ManifestRow]) -> dict[str, int]:
    """``{flag: number of ok clips carrying it}`` from the ``qa`` column (``;``-separated flags)."""
    c: Counter[str] = Counter()
    for r in rows:
        if r.status == "ok" and r.qa:
            c.update({f.strip() for f in r.qa.split(";") if f.strip()})
    return dict(sorted(c.items()))


def _build_info(cfg, root, rows, frames_built, seconds, engine, kept, state, attrs) -> dict:
    ok = [r for r in rows if r.status == "ok"]
    failed = [r for r in rows if r.status == "failed"]
    return {
        "mepipe_version": __version__,
        "git_commit": git_commit(),
        "pipeline": cfg.name,
        "config_hash": cfg.hash(),
        "source": str(Path(root).resolve()),
        "versions": library_versions(),
        "backends": json.loads(str(attrs["backends"])),
        "model_files": json.loads(str(attrs["model_files"])),
        "video_decoder": cfg.video.decoder,
        "engine": engine,
        "clips": len(rows),
        "clips_ok": len(ok),
        "clips_failed": len(failed),
        "clips_kept_from_earlier_runs": kept,
        "frames": sum(r.n_frames for r in ok),
        "frames_built": frames_built,
        "seconds": round(seconds, 3),
        "attempts": len(state.get("attempts", [])),
        "failures_by_reason": dict(sorted(Counter(r.reason for r in failed).items())),
        "qa_flags": qa_counts(rows),
        "clips_flagged": sum(1 for r in ok if r.qa),
    }


def _log_summary(info: dict) -> None:
    log.info(
        "build finished: %d ok (%d kept from earlier runs), %d failed, %d frames built in %.1f s",
        info["clips_ok"], info["clips_kept_from_earlier_runs"], info["clips_failed"],
        info["frames_built"], info["seconds"],
    )  # fmt: skip
    if info["failures_by_reason"]:
        text = ", ".join(f"{k} {v}" for k, v in info["failures_by_reason"].items())
        log.info("failures by reason: %s (see status=failed rows in manifest.csv)", text)
    if info["qa_flags"]:
        text = ", ".join(f"{k} {v}" for k, v in info["qa_flags"].items())
        log.info("quality flags on ok clips: %s", text)
