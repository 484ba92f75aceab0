"""Build tasks: a batch of clips that one worker turns into one shard file.

A :class:`Task` carries clip records (paths and annotations, never pixels), their fingerprints, the
pipeline config and the shard attributes; :func:`run_task` runs in the worker process (a local
process, or a Dask worker on another machine reading the same filesystem), streams each clip into
``OUT/shards/shard-NNNNN.h5.tmp`` with :func:`mepipe.process.safe_stream` (crops go to the shard as
the face stage emits them), renames the shard when complete and returns the manifest rows (a few hundred bytes per clip). Frames never leave the worker.

Every stored clip group also carries its own manifest row (attribute ``manifest_row``, JSON, without
the ``shard`` column) and fingerprint, so a shard finished just before a kill can be adopted by the
next run (:mod:`mepipe.engine.state`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from mepipe.config import PipelineConfig
from mepipe.records import ClipIssue, ClipRecord, ManifestRow, failed_row


@dataclass(frozen=True)
class Task:
    """One unit of work: clips to build into the shard ``shard-<index>.h5``.

    Attributes:
        index: the shard number (unique within the build folder, over all runs).
        clips: the clip records, in manifest order.
        fingerprints: each clip's source fingerprint (same order).
        out_dir: the build folder (as the workers see it: a shared filesystem for Dask).
        cfg: the pipeline config.
    """

    index: int
    clips: tuple[ClipRecord, ...]
    fingerprints: tuple[str, ...]
    out_dir: str
    cfg: PipelineConfig

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}"

    def keys(self) -> list[str]:
        return [c.key for c in self.clips]


@dataclass
class TaskResult:
    """What a task sends back: rows (ok and failed, in task order), shards written, counts, where it
    ran, and the shard root attributes it wrote (backends, model-file hashes: for build-info.json)."""

    index: int
    rows: list[ManifestRow]
    shards: list[str]
    frames: int
    seconds: float
    worker: str
    file_attrs: dict = dataclasses.field(default_factory=dict)


def shard_attrs(cfg: PipelineConfig) -> dict[str, str | int]:
    """Root attributes of every shard of a build: pipeline, config hash, backends and the sha256 of
    their model files (loads the face backends in this process, once)."""
    from mepipe.face.backends import get_detector, get_landmarker

    face = cfg.face
    det = get_detector(face.detector, face.upsample, face.options)
    lmk = get_landmarker(face.landmarker, face.options)
    attrs: dict[str, str | int] = {
        "pipeline": cfg.name,
        "config_hash": cfg.hash(),
        "backends": json.dumps({"detector": det.name, "landmarker": lmk.name}),
        "model_files": json.dumps({**det.model_files(), **lmk.model_files()}, sort_keys=True),
        "crop_size": cfg.align.crop_size,
        "align_mode": cfg.align.mode,
        "frame_encoding": cfg.storage.encoding,
        "video_decoder": cfg.video.decoder,
    }
    if cfg.flow.enabled:  # the flow is computed in the workers (mepipe.process); `mepipe flow` skips these
        from mepipe.flow_stage import flow_hash

        attrs["flow_hash"] = flow_hash(cfg.flow)
    return attrs


_MALLOC_TUNED: list[bool] = []
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def tune_malloc() -> None:
    """Undo the effect of ``MALLOC_TRIM_THRESHOLD_`` in this worker (once per process).

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also turns off glibc's
    adaptive mmap threshold: every decoded frame (about 1 MB) is then mmap'ed, zero-filled and
    unmapped again, which more than doubled the CPU time per frame of a build (measured: 13.2 s
    against 7.7 s, mostly system time, for the same 3,609 frames). Frames are served from the heap
    again with an mmap threshold of 32 MiB; memory above 64 MiB of free heap top is still returned to
    the system. Nothing happens where the variable is not set, or outside glibc.
    """
    if _MALLOC_TUNED or "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return
    _MALLOC_TUNED.append(True)
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(M_TRIM_THRESHOLD, 64 << 20)
    except (OSError, AttributeError):
        pass


def warm_up(cfg: PipelineConfig) -> str:
    """Import the per-clip code and load the face backends in a worker before its first task (runs
    while the driver scans the dataset); returns the worker's ``host:pid``."""
    import mepipe.process  # noqa: F401

    tune_malloc()
    shard_attrs(cfg)
    return f"{socket.gethostname()}:{os.getpid()}"


def plan_tasks(
    todo: list[tuple[ClipRecord, str]],
    *,
    first_index: int,
    slots: int,
    max_clips: int,
    clips_per_task: int = 0,
    **common: object,
) -> list[Task]:
    """Cut the clips to build into tasks, in order.

    Args:
        todo: ``(record, fingerprint)`` of each clip to build.
        first_index: shard number of the first task.
        slots: parallel workers.
        max_clips: ``shards.max_clips`` (the most clips a task takes).
        clips_per_task: explicit size (``build.clips_per_task``; 0: automatic).
        common: ``out_dir`` and ``cfg`` of every task.

    Automatic sizes: with one worker, ``len(todo) / 4`` clips per task (at most ``max_clips``); with
    several, decreasing sizes (guided scheduling): each task takes ``1 / (2 * slots)`` of the clips
    still to plan (at least 1, at most ``max_clips``), so the last tasks are single clips and no worker
    idles long while another finishes a big one (tasks of 16 clips left one of 2 workers idle for
    about half a task at the end of a 160-clip build).
    """
    if not todo:
        return []
    slots = max(1, slots)
    fixed = clips_per_task or (math.ceil(len(todo) / 4) if slots == 1 else 0)
    bounds, start = [], 0
    while start < len(todo):
        size = fixed or math.ceil((len(todo) - start) / (2 * slots))
        size = max(1, min(size, max_clips))
        bounds.append(start)
        start += size
    bounds.append(len(todo))
    tasks = []
    for k, (start, end) in enumerate(itertools.pairwise(bounds)):
        part = todo[start:end]
        tasks.append(
            Task(
                index=first_index + k,
                clips=tuple(c for c, _ in part),
                fingerprints=tuple(fp for _, fp in part),
                **common,  # type: ignore[arg-type]
            )
        )
    return tasks


def split_task(task: Task, first_index: int) -> list[Task]:
    """One single-clip task per clip of ``task`` (numbered from ``first_index``): used after a worker
    crashed on a task, to find the clip that crashes it."""
    return [
        dataclasses.replace(task, index=first_index + k, clips=(c,), fingerprints=(fp,))
        for k, (c, fp) in enumerate(zip(task.clips, task.fingerprints, strict=True))
    ]


def pending_row(clip: ClipRecord, fingerprint: str) -> ManifestRow:
    """The manifest row of a clip that is planned but not built yet (``status: pending``)."""
    row = failed_row(clip, ClipIssue(clip.dataset, clip.clip_id, "", ""))
    return dataclasses.replace(row, status="pending", reason="", message="", fingerprint=fingerprint)


def crashed_row(clip: ClipRecord, fingerprint: str, why: str) -> ManifestRow:
    """The failed row of a clip whose worker process died while building it, twice."""
    issue = ClipIssue(
        clip.dataset,
        clip.clip_id,
        "worker_crashed",
        f"clip {clip.clip_id}: the worker process building it died ({why}), also on a second try; "
        f"the source {clip.source_path} may crash the decoder or need more memory than a worker has; "
        "check the file, or give workers more memory, and run the build again",
        clip.subject,
        clip.source_path,
    )
    return dataclasses.replace(failed_row(clip, issue), fingerprint=fingerprint)


def run_task(task: Task) -> TaskResult:
    """Build the task's clips into its shard (runs in a worker process); returns their rows.

    Raises:
        OSError: writing the shard failed (disk full, permissions ...): the build stops, nothing
            of this task is listed, and the next run builds these clips again.
    """
    import cv2

    from mepipe.process import ok_row, safe_stream, too_few_frames
    from mepipe.shards.writer import ShardWriter

    cv2.setNumThreads(1)
    tune_malloc()
    t0 = time.perf_counter()
    cfg = task.cfg
    file_attrs = shard_attrs(cfg)
    writer = ShardWriter(
        Path(task.out_dir),
        file_attrs,
        max_clips=len(task.clips),
        max_bytes=cfg.shards.max_bytes,
        name=task.name,
    )
    rows: list[ManifestRow] = []
    frames = 0
    try:
        for clip, fp in zip(task.clips, task.fingerprints, strict=True):

            def row_attrs(meta, fp=fp) -> dict[str, object]:
                # every clip group carries its own manifest row: a shard finished just before a kill
                # is adopted by the next run (mepipe.engine.state)
                row = dataclasses.replace(ok_row(meta, ""), fingerprint=fp)
                return {
                    "fingerprint": fp,
                    "manifest_row": json.dumps(dataclasses.asdict(row), sort_keys=True),
                }

            min_frames = cfg.build.min_frames
            if clip.source_kind == "images" and len(clip.frame_files) < min_frames:
                result = too_few_frames(clip, len(clip.frame_files), min_frames)
            else:
                result = safe_stream(clip, cfg, writer, row_attrs)
            if isinstance(result, ClipIssue):
                rows.append(dataclasses.replace(failed_row(clip, result), fingerprint=fp))
                continue
            meta, shard = result
            row = dataclasses.replace(ok_row(meta, shard), fingerprint=fp)
            frames += row.n_frames
            rows.append(row)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return TaskResult(
        task.index,
        rows,
        writer.closed_names,
        frames,
        time.perf_counter() - t0,
        f"{socket.gethostname()}:{os.getpid()}",
        file_attrs,
    )
