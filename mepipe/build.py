"""``build-dataset``: adapter -> face stage -> keyframes -> frame selection/encoding -> HDF5 shards +
manifest (+ the pair table).

Clips are processed in parallel worker processes (joblib); only the main process writes HDF5. A clip
that fails (unreadable frame or video, no face, bad annotation ...) becomes a ``failed`` manifest row
with its reason and the build goes on. The manifest is rewritten (atomically) each time a shard is
completed, so an interrupted build leaves complete shards that the manifest lists.

Per clip (:func:`process_clip`): image folders are read by index; a video is decoded once, front to
back (a seek into long-GOP H.264 costs a GOP of decoding), with the frames before the reference
frame kept until the face is found. Then keyframes are resolved (annotated / estimated from the
aligned crops / uniform), the frames to store are chosen (``storage.frame_step``/``max_frames``,
keyframes and the reference frame always kept) and encoded (raw or JPEG) in the worker.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mepipe import __version__
from mepipe.config import PipelineConfig, write_resolved
from mepipe.datasets.base import get_adapter
from mepipe.errors import ConfigError
from mepipe.face.align import (
    FaceFit,
    FaceIssue,
    clip_transform,
    landmark_box,
    locate_face,
    per_frame_transforms,
    to_gray,
    warp_to_crop,
)
from mepipe.face.backends import get_detector, get_landmarker
from mepipe.face.geometry import apply_transform
from mepipe.keyframes import keep_indices, position_of, resolve_keyframes
from mepipe.records import ClipIssue, ClipRecord, ManifestRow, failed_row
from mepipe.shards.manifest import MANIFEST_NAME, write_manifest
from mepipe.shards.writer import ClipOutput, ShardWriter, encode_jpeg, jpeg_digest
from mepipe.sources import FrameReadError, FrameSource, open_source


def _reference_start(clip: ClipRecord, numbers: np.ndarray, cfg: PipelineConfig) -> int:
    """Position of the configured reference frame (onset, apex or first; the first when not annotated)."""
    want = {"onset": clip.onset, "apex": clip.apex, "first": None}[cfg.face.reference]
    start = position_of(numbers, want) if want is not None else 0
    return 0 if start is None else start


def _reference_positions(clip: ClipRecord, numbers: np.ndarray, cfg: PipelineConfig) -> list[int]:
    """Positions to try for the reference frame: the configured one, then the next ``search_frames``."""
    start = _reference_start(clip, numbers, cfg)
    return list(range(start, min(len(numbers), start + cfg.face.search_frames + 1)))


def _find_reference(
    src: FrameSource, positions: list[int], cfg: PipelineConfig
) -> tuple[int, np.ndarray, FaceFit]:
    det = get_detector(cfg.face.detector, cfg.face.upsample)
    lmk = get_landmarker(cfg.face.landmarker)
    last: FaceIssue | None = None
    for pos in positions:
        rgb = src.read(pos)
        try:
            return pos, rgb, locate_face(to_gray(rgb), det, lmk, cfg.face)
        except FaceIssue as exc:
            last = exc
    assert last is not None
    raise FaceIssue(last.reason, f"{last} on frames {positions[0]}..{positions[-1]} (positions) of the clip")


@dataclass
class Aligned:
    """The face stage's result for one clip, before keyframes and subsampling.

    Attributes:
        frames: ``(T, S, S, 3) uint8`` aligned crops; ``numbers`` ``(T,) int64`` their source frame
            numbers (T can be smaller than the source's count when a damaged video was truncated).
        transforms: ``(2, 3)`` or ``(T, 2, 3)`` float64 source -> crop.
        ref_pos: position of the reference frame; ``fit`` the face found there; ``note`` the face note.
        notes: non-fatal findings for the manifest (truncation ...).
    """

    frames: np.ndarray
    numbers: np.ndarray
    transforms: np.ndarray
    ref_pos: int
    fit: FaceFit
    note: str
    notes: list[str]

    def reference_transform(self) -> np.ndarray:
        return self.transforms if self.transforms.ndim == 2 else self.transforms[self.ref_pos]


def _moved_note(note: str, numbers: np.ndarray, wanted: int, ref_pos: int) -> str:
    if ref_pos == wanted:
        return note
    return (
        note + "; " if note else ""
    ) + f"no face on frame {int(numbers[wanted])}, used frame {int(numbers[ref_pos])}"


def _track_per_frame(
    raw: list[np.ndarray], ref_pos: int, fit: FaceFit, cfg: PipelineConfig
) -> tuple[np.ndarray, np.ndarray]:
    """``per_frame`` mode: landmarks tracked from the reference outwards, smoothed transforms, crops."""
    lmk = get_landmarker(cfg.face.landmarker)
    n, size = len(raw), cfg.align.crop_size
    pts = np.empty((n, 68, 2), dtype=np.float32)
    pts[ref_pos] = fit.landmarks
    for order in (range(ref_pos + 1, n), range(ref_pos - 1, -1, -1)):
        prev = fit.landmarks
        for i in order:
            pts[i] = prev = lmk.landmarks(to_gray(raw[i]), landmark_box(prev))
    transforms = per_frame_transforms(pts, cfg.align)
    frames = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        warp_to_crop(raw[i], transforms[i], size, out=frames[i])
    return frames, transforms


def _align_random_access(
    src: FrameSource, clip: ClipRecord, numbers: np.ndarray, cfg: PipelineConfig
) -> Aligned:
    """Image folders: find the reference among ``face.search_frames`` frames, then read every frame."""
    size = cfg.align.crop_size
    positions = _reference_positions(clip, numbers, cfg)
    ref_pos, ref_rgb, fit = _find_reference(src, positions, cfg)
    note = _moved_note(fit.note, numbers, positions[0], ref_pos)
    if cfg.align.mode == "clip":
        frames = np.empty((len(numbers), size, size, 3), dtype=np.uint8)
        m = clip_transform(fit, cfg.align)
        for i in range(len(numbers)):
            warp_to_crop(ref_rgb if i == ref_pos else src.read(i), m, size, out=frames[i])
        transforms = m
    else:
        raw = [ref_rgb if i == ref_pos else src.read(i) for i in range(len(numbers))]
        frames, transforms = _track_per_frame(raw, ref_pos, fit, cfg)
    return Aligned(frames, numbers, transforms, ref_pos, fit, note, [])


def _align_sequential(
    src: FrameSource, clip: ClipRecord, numbers: np.ndarray, cfg: PipelineConfig
) -> Aligned:
    """Videos: decode once, front to back.

    Frames before the reference frame are kept raw (up to ``video.buffer_mb``; beyond that they are
    dropped and decoded again from the start once the face is found). The reference search starts at
    the configured frame and goes on for ``video.search_frames`` frames (``None``: until a face is
    found, so a face that only appears later in the clip is found). ``per_frame`` mode keeps every raw
    frame. A decode error fails the clip, or with ``video.on_decode_error: truncate`` ends it there.
    """
    n, size = len(numbers), cfg.align.crop_size
    start = _reference_start(clip, numbers, cfg)
    limit = cfg.video.search_frames
    stop_search = n if limit is None else min(n, start + limit + 1)
    det = get_detector(cfg.face.detector, cfg.face.upsample)
    lmk = get_landmarker(cfg.face.landmarker)
    keep_all = cfg.align.mode == "per_frame"
    budget = cfg.video.buffer_mb * 2**20
    frames = np.empty((n, size, size, 3), dtype=np.uint8) if not keep_all else None
    raw: list[np.ndarray] = []
    buffered, spilled = 0, False
    fit: FaceFit | None = None
    m: np.ndarray | None = None
    ref_pos, good = -1, 0
    last: FaceIssue | None = None
    notes: list[str] = []
    try:
        for pos, rgb in src.iter_range(0, n):
            good = pos + 1
            if keep_all:
                raw.append(rgb)
            if fit is None:
                if start <= pos < stop_search:
                    try:
                        fit = locate_face(to_gray(rgb), det, lmk, cfg.face)
                    except FaceIssue as exc:
                        last = exc
                    else:
                        ref_pos = pos
                        if not keep_all:
                            assert frames is not None
                            m = clip_transform(fit, cfg.align)
                            for i, r in enumerate(raw):
                                warp_to_crop(r, m, size, out=frames[i])
                            raw = []
                if fit is None:
                    if pos + 1 >= stop_search:
                        break
                    if not keep_all:
                        if not spilled and buffered + rgb.nbytes <= budget:
                            raw.append(rgb)
                            buffered += rgb.nbytes
                        else:
                            spilled, raw = True, []
                    continue
            if m is not None and frames is not None:
                warp_to_crop(rgb, m, size, out=frames[pos])
    except FrameReadError as exc:
        if cfg.video.on_decode_error != "truncate" or fit is None or good < 2:
            raise
        notes.append(f"truncated: {exc}; kept the {good} frames before it")
        n, numbers = good, numbers[:good]
        if frames is not None:
            frames = frames[:good]
        raw = raw[:good]
    if fit is None:
        reason = last.reason if last is not None else "no_face"
        what = f"{last}" if last is not None else f"{cfg.face.detector} found no face"
        raise FaceIssue(
            reason,
            f"{what} on frames {int(numbers[start])}..{int(numbers[min(stop_search, n) - 1])} "
            f"(searched {min(stop_search, n) - start} frames)",
        )
    note = _moved_note(fit.note, numbers, start, ref_pos)
    if keep_all:
        frames, transforms = _track_per_frame(raw, ref_pos, fit, cfg)
    else:
        assert m is not None and frames is not None
        if spilled:
            for pos, rgb in src.iter_range(0, ref_pos):
                warp_to_crop(rgb, m, size, out=frames[pos])
        transforms = m
    return Aligned(frames, numbers, transforms, ref_pos, fit, note, notes)


def _video_keyframe_issue(clip: ClipRecord, numbers: np.ndarray) -> tuple[str, str] | None:
    """Annotated keyframes of a video clip must lie inside the decoded frames."""
    lo, hi = int(numbers[0]), int(numbers[-1])
    for label in ("onset", "apex", "offset"):
        v = getattr(clip, label)
        if v is not None and not lo <= v <= hi:
            return (
                "keyframe_not_on_disk",
                f"{label} {v} is outside the video's frames {lo}..{hi} (0-based decoded "
                "frame indices); check the annotation or the file",
            )
    return None


def process_clip(clip: ClipRecord, cfg: PipelineConfig) -> ClipOutput | ClipIssue:
    """Align one clip, find its keyframes, keep the configured frames and encode them.

    Image folders are read by index; videos are decoded once, in order (see :func:`_align_sequential`).

    Returns:
        The :class:`ClipOutput` to store, or a :class:`ClipIssue` with the reason it cannot be built.
    """
    import cv2

    cv2.setNumThreads(1)

    def issue(reason: str, message: str) -> ClipIssue:
        return ClipIssue(
            clip.dataset,
            clip.clip_id,
            reason,
            f"clip {clip.clip_id}: {message}",
            clip.subject,
            clip.source_path,
        )

    try:
        src = open_source(clip, decode_threads=cfg.video.decode_threads)
    except FrameReadError as exc:
        return issue(exc.reason, str(exc))
    try:
        numbers = np.asarray(src.frame_numbers, dtype=np.int64)
        if len(numbers) == 0:
            return issue("no_frames", "the source has no frames")
        if not src.random_access:
            clip = replace(clip, fps=float(src.fps))
            bad = _video_keyframe_issue(clip, numbers)
            if bad is not None:
                return issue(*bad)
            al = _align_sequential(src, clip, numbers, cfg)
        else:
            al = _align_random_access(src, clip, numbers, cfg)
        t_all = len(al.numbers)
        timestamps = src.timestamps_ms()[:t_all]
        source_sha = [src.checksum(i) for i in range(t_all)] if src.random_access else []
        file_sha = src.file_checksum()
        notes = list(src.notes) + al.notes
    except FrameReadError as exc:
        return issue(exc.reason, str(exc))
    except FaceIssue as exc:
        return issue(exc.reason, str(exc))
    finally:
        src.close()
    crop_points = apply_transform(al.reference_transform(), al.fit.landmarks)
    kf = resolve_keyframes(
        clip, al.numbers, frames=al.frames, crop_points=crop_points, fps=clip.fps, cfg=cfg.keyframes
    )
    if kf.note:
        notes.append(kf.note)
    st = cfg.storage
    keep = keep_indices(
        t_all,
        step=st.frame_step,
        max_frames=st.max_frames,
        always=(kf.onset_idx, kf.apex_idx, kf.offset_idx, al.ref_pos),
    )
    whole = len(keep) == t_all

    def sub(arr: np.ndarray) -> np.ndarray:
        return arr if whole else arr[keep]

    def idx(i: int) -> int:
        return int(np.searchsorted(keep, i))

    frames = sub(al.frames)
    transforms = al.transforms if al.transforms.ndim == 2 else sub(al.transforms)
    extra_arrays: dict[str, np.ndarray] = {}
    extra_attrs: dict[str, object] = {}
    if kf.curve is not None:
        extra_arrays["motion_energy"] = sub(kf.curve).astype(np.float32)
        extra_attrs["keyframe_snr"] = float(kf.snr) if kf.snr is not None and np.isfinite(kf.snr) else -1.0
    if not whole:
        extra_attrs["source_n_frames"] = t_all
    frames_jpeg = None
    if st.encoding == "jpeg":
        frames_jpeg = encode_jpeg(frames, st.jpeg_quality)
        digest = jpeg_digest(frames_jpeg)
    else:
        frames = np.ascontiguousarray(frames)
        digest = hashlib.sha256(memoryview(frames).cast("B")).hexdigest()
    b = al.fit.box
    files = list(clip.frame_files) if clip.frame_files else []
    return ClipOutput(
        clip=clip,
        frames=None if frames_jpeg is not None else frames,
        frame_numbers=sub(al.numbers),
        transforms=transforms,
        landmarks_ref=al.fit.landmarks,
        reference_idx=idx(al.ref_pos),
        face_box=np.array([b.left, b.top, b.right, b.bottom]),
        faces_found=al.fit.faces_found,
        face_note=al.note,
        onset_idx=idx(kf.onset_idx),
        apex_idx=idx(kf.apex_idx),
        offset_idx=idx(kf.offset_idx),
        keyframe_source=kf.source,
        source_files=[files[i] for i in keep] if files else [],
        source_sha256=[source_sha[i] for i in keep] if source_sha else [],
        frames_sha256=digest,
        extra_arrays=extra_arrays,
        timestamps_ms=sub(timestamps),
        frames_jpeg=frames_jpeg,
        frame_shape=tuple(int(v) for v in frames.shape[1:]),  # type: ignore[arg-type]
        jpeg_quality=st.jpeg_quality if frames_jpeg is not None else 0,
        source_file_sha256=file_sha,
        notes="; ".join(notes),
        extra_attrs=extra_attrs,
    )


def _safe_process(clip: ClipRecord, cfg: PipelineConfig) -> ClipOutput | ClipIssue:
    """``process_clip`` that turns any unexpected exception into a failed row (the build goes on)."""
    try:
        return process_clip(clip, cfg)
    except Exception as exc:  # noqa: BLE001  (recorded with its traceback, never swallowed silently)
        tb = traceback.format_exc(limit=3).strip().splitlines()[-1]
        return ClipIssue(
            clip.dataset,
            clip.clip_id,
            "error",
            f"clip {clip.clip_id}: unexpected {type(exc).__name__}: {exc} ({tb}); please report it",
            clip.subject,
            clip.source_path,
        )


def ok_row(out: ClipOutput, shard: str) -> ManifestRow:
    c = out.clip
    return ManifestRow(
        key=c.key,
        dataset=c.dataset,
        subject=c.subject,
        clip_id=c.clip_id,
        status="ok",
        shard=shard,
        message=out.notes,
        n_frames=out.n_frames,
        onset=out.source_number(out.onset_idx),
        apex=out.source_number(out.apex_idx),
        offset=out.source_number(out.offset_idx),
        onset_idx=out.onset_idx,
        apex_idx=out.apex_idx,
        offset_idx=out.offset_idx,
        keyframe_source=out.keyframe_source,
        emotion_raw=c.emotion_raw,
        aus_raw=c.aus_raw,
        fps=c.fps,
        expression_type=c.expression_type,
        fixes=";".join(c.fixes),
        reference_frame=out.source_number(out.reference_idx),
        faces_found=out.faces_found,
        face_note=out.face_note,
        frames_sha256=out.frames_sha256,
        source_path=c.source_path,
        extra=json.dumps(c.extra, sort_keys=True),
    )


def environment_versions() -> dict[str, str]:
    """Versions of the libraries that shape the output, recorded next to every build."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "mepipe": __version__}
    for dist in ("numpy", "opencv-python", "dlib-bin", "h5py", "pandas", "torch", "decord"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    return out


@dataclass
class BuildSummary:
    out_dir: Path
    clips_ok: int
    clips_failed: int
    frames: int
    seconds: float
    shards: list[str]

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def prepare_out_dir(out: Path, force: bool) -> None:
    """Refuse to overwrite an existing build unless ``force``; then remove its outputs only."""
    if (out / MANIFEST_NAME).exists() or (out / "shards").exists():
        if not force:
            raise ConfigError(
                f"{out} already holds a build; choose another --out or pass --force to replace it"
            )
        shutil.rmtree(out / "shards", ignore_errors=True)
        (out / MANIFEST_NAME).unlink(missing_ok=True)
        for stale in ("pairs.csv", "pairs.json"):  # they point into the shards being replaced
            (out / stale).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def build_dataset(
    cfg: PipelineConfig,
    source: str | Path | None,
    out: str | Path,
    *,
    workers: int = 1,
    force: bool = False,
    limit: int | None = None,
    on_total: Callable[[int], None] | None = None,
    on_clip: Callable[[ManifestRow], None] | None = None,
) -> BuildSummary:
    """Build shards + manifest for the dataset at ``source`` (or ``cfg.dataset.source``).

    Args:
        workers: worker processes for the face stage (1: in-process).
        force: replace an existing build in ``out``.
        limit: build only the first ``limit`` clips (quick looks at a new dataset).
        on_total, on_clip: progress callbacks (total clip count; each finished row).
    """
    from joblib import Parallel, delayed

    t0 = time.perf_counter()
    out = Path(out)
    root = source or cfg.dataset.source
    if root is None:
        raise ConfigError("no dataset folder: pass --source DIR (or set dataset.source in the pipeline)")
    adapter = get_adapter(cfg.dataset.adapter, root, **cfg.dataset.options)
    scan = adapter.scan()
    clips = scan.clips[:limit] if limit else scan.clips
    prepare_out_dir(out, force)
    write_resolved(cfg, out)
    det, lmk = get_detector(cfg.face.detector, cfg.face.upsample), get_landmarker(cfg.face.landmarker)
    file_attrs = {
        "pipeline": cfg.name,
        "config_hash": cfg.hash(),
        "backends": json.dumps({"detector": det.name, "landmarker": lmk.name}),
        "model_files": json.dumps({**det.model_files(), **lmk.model_files()}, sort_keys=True),
        "crop_size": cfg.align.crop_size,
        "align_mode": cfg.align.mode,
        "frame_encoding": cfg.storage.encoding,
    }
    failed = [failed_row(c, i) for c, i in scan.failures]
    done: list[ManifestRow] = []
    pending: list[ManifestRow] = []

    def shard_closed(name: str) -> None:
        done.extend(pending)
        pending.clear()
        write_manifest(done + failed, out)

    writer = ShardWriter(
        out,
        file_attrs,
        max_clips=cfg.shards.max_clips,
        max_bytes=cfg.shards.max_bytes,
        on_shard_closed=shard_closed,
    )
    if on_total:
        on_total(len(clips))
    for row in failed:
        if on_clip:
            on_clip(row)
    n_frames = 0
    by_key = {c.key: c for c in clips}
    jobs = (delayed(_safe_process)(c, cfg) for c in clips)
    try:
        for result in Parallel(n_jobs=workers, return_as="generator")(jobs):
            if isinstance(result, ClipIssue):
                row = failed_row(by_key[f"{result.dataset}/{result.clip_id}"], result)
                failed.append(row)
            else:
                shard = writer.add(result)
                row = ok_row(result, shard)
                pending.append(row)
                n_frames += row.n_frames
            if on_clip:
                on_clip(row)
        writer.close()
    except BaseException:
        writer.abort()
        write_manifest(done + failed, out)
        raise
    write_manifest(done + failed, out)
    seconds = time.perf_counter() - t0
    info = {
        "mepipe_version": __version__,
        "pipeline": cfg.name,
        "config_hash": cfg.hash(),
        "source": str(Path(root).resolve()),
        "versions": environment_versions(),
        "backends": json.loads(file_attrs["backends"]),
        "model_files": json.loads(file_attrs["model_files"]),
        "clips_ok": len(done),
        "clips_failed": len(failed),
        "frames": n_frames,
        "seconds": round(seconds, 3),
        "workers": workers,
        "failures_by_reason": dict(sorted(Counter(r.reason for r in failed).items())),
    }
    (out / "build-info.json").write_text(json.dumps(info, indent=2) + "\n")
    if cfg.pairs.write:
        from mepipe.pairs import write_pair_table

        write_pair_table(out, cfg.pairs, seed=cfg.pairs.seed if cfg.pairs.seed is not None else cfg.seed)
    shards = sorted(p.name for p in (out / "shards").glob("shard-*.h5"))
    return BuildSummary(out, len(done), len(failed), n_frames, seconds, shards)
