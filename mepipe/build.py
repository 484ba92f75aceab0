"""``build-dataset``: adapter -> face stage -> keyframes -> HDF5 shards + manifest.

Clips are processed in parallel worker processes (joblib); only the main process writes HDF5. A clip
that fails (unreadable frame, no face, bad annotation ...) becomes a ``failed`` manifest row with its
reason and the build goes on. The manifest is rewritten (atomically) each time a shard is completed,
so an interrupted build leaves complete shards that the manifest lists.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
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
from mepipe.keyframes import position_of, resolve_keyframes
from mepipe.records import ClipIssue, ClipRecord, ManifestRow, failed_row
from mepipe.shards.manifest import MANIFEST_NAME, write_manifest
from mepipe.shards.writer import ClipOutput, ShardWriter
from mepipe.sources import FrameReadError, FrameSource, open_source


def _reference_positions(clip: ClipRecord, numbers: np.ndarray, cfg: PipelineConfig) -> list[int]:
    """Positions to try for the reference frame: the configured one, then the next ``search_frames``."""
    want = {"onset": clip.onset, "apex": clip.apex, "first": None}[cfg.face.reference]
    start = position_of(numbers, want) if want is not None else 0
    start = 0 if start is None else start
    return list(range(start, min(len(numbers), start + cfg.face.search_frames + 1)))


def _find_reference(src: FrameSource, positions: list[int], cfg: PipelineConfig) -> tuple[int, np.ndarray, FaceFit]:
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


def process_clip(clip: ClipRecord, cfg: PipelineConfig) -> ClipOutput | ClipIssue:
    """Align one clip. Returns the aligned frames and metadata, or a :class:`ClipIssue`."""
    import cv2

    cv2.setNumThreads(1)
    size = cfg.align.crop_size

    def issue(reason: str, message: str) -> ClipIssue:
        return ClipIssue(clip.dataset, clip.clip_id, reason, f"clip {clip.clip_id}: {message}", clip.subject, clip.source_path)

    try:
        src = open_source(clip)
    except FrameReadError as exc:
        return issue(exc.reason, str(exc))
    try:
        numbers = np.asarray(src.frame_numbers, dtype=np.int64)
        if len(numbers) == 0:
            return issue("no_frames", "the source has no frames")
        positions = _reference_positions(clip, numbers, cfg)
        ref_pos, ref_rgb, fit = _find_reference(src, positions, cfg)
        note = fit.note
        if ref_pos != positions[0]:
            note = (note + "; " if note else "") + f"no face on frame {int(numbers[positions[0]])}, used frame {int(numbers[ref_pos])}"
        frames = np.empty((len(numbers), size, size, 3), dtype=np.uint8)
        if cfg.align.mode == "clip":
            m = clip_transform(fit, cfg.align)
            for i in range(len(numbers)):
                warp_to_crop(ref_rgb if i == ref_pos else src.read(i), m, size, out=frames[i])
            transforms = m
        else:
            lmk = get_landmarker(cfg.face.landmarker)
            raw = [ref_rgb if i == ref_pos else src.read(i) for i in range(len(numbers))]
            pts = np.empty((len(numbers), 68, 2), dtype=np.float32)
            pts[ref_pos] = fit.landmarks
            for order in (range(ref_pos + 1, len(numbers)), range(ref_pos - 1, -1, -1)):
                prev = fit.landmarks
                for i in order:
                    pts[i] = prev = lmk.landmarks(to_gray(raw[i]), landmark_box(prev))
            transforms = per_frame_transforms(pts, cfg.align)
            for i in range(len(numbers)):
                warp_to_crop(raw[i], transforms[i], size, out=frames[i])
    except FrameReadError as exc:
        return issue(exc.reason, str(exc))
    except FaceIssue as exc:
        return issue(exc.reason, str(exc))
    finally:
        src.close()
    kf = resolve_keyframes(clip, numbers)
    b = fit.box
    return ClipOutput(
        clip=clip, frames=frames, frame_numbers=numbers, transforms=transforms,
        landmarks_ref=fit.landmarks, reference_idx=ref_pos,
        face_box=np.array([b.left, b.top, b.right, b.bottom]), faces_found=fit.faces_found, face_note=note,
        onset_idx=kf.onset_idx, apex_idx=kf.apex_idx, offset_idx=kf.offset_idx, keyframe_source=kf.source,
        source_files=list(clip.frame_files), source_sha256=[src.checksum(i) for i in range(len(numbers))],
        frames_sha256=hashlib.sha256(frames.tobytes()).hexdigest(),
    )


def _safe_process(clip: ClipRecord, cfg: PipelineConfig) -> ClipOutput | ClipIssue:
    """``process_clip`` that turns any unexpected exception into a failed row (the build goes on)."""
    try:
        return process_clip(clip, cfg)
    except Exception as exc:  # noqa: BLE001  (recorded with its traceback, never swallowed silently)
        tb = traceback.format_exc(limit=3).strip().splitlines()[-1]
        return ClipIssue(clip.dataset, clip.clip_id, "error",
                         f"clip {clip.clip_id}: unexpected {type(exc).__name__}: {exc} ({tb}); please report it",
                         clip.subject, clip.source_path)


def ok_row(out: ClipOutput, shard: str) -> ManifestRow:
    c = out.clip
    return ManifestRow(
        key=c.key, dataset=c.dataset, subject=c.subject, clip_id=c.clip_id, status="ok", shard=shard,
        n_frames=int(out.frames.shape[0]),
        onset=out.source_number(out.onset_idx), apex=out.source_number(out.apex_idx),
        offset=out.source_number(out.offset_idx), onset_idx=out.onset_idx, apex_idx=out.apex_idx,
        offset_idx=out.offset_idx, keyframe_source=out.keyframe_source, emotion_raw=c.emotion_raw,
        aus_raw=c.aus_raw, fps=c.fps, expression_type=c.expression_type, fixes=";".join(c.fixes),
        reference_frame=out.source_number(out.reference_idx), faces_found=out.faces_found,
        face_note=out.face_note, frames_sha256=out.frames_sha256, source_path=c.source_path,
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
            raise ConfigError(f"{out} already holds a build; choose another --out or pass --force to replace it")
        shutil.rmtree(out / "shards", ignore_errors=True)
        (out / MANIFEST_NAME).unlink(missing_ok=True)
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
        "pipeline": cfg.name, "config_hash": cfg.hash(),
        "backends": json.dumps({"detector": det.name, "landmarker": lmk.name}),
        "model_files": json.dumps({**det.model_files(), **lmk.model_files()}, sort_keys=True),
        "crop_size": cfg.align.crop_size, "align_mode": cfg.align.mode,
    }
    failed = [failed_row(c, i) for c, i in scan.failures]
    done: list[ManifestRow] = []
    pending: list[ManifestRow] = []

    def shard_closed(name: str) -> None:
        done.extend(pending)
        pending.clear()
        write_manifest(done + failed, out)

    writer = ShardWriter(out, file_attrs, max_clips=cfg.shards.max_clips, max_bytes=cfg.shards.max_bytes,
                         on_shard_closed=shard_closed)
    if on_total:
        on_total(len(clips))
    for row in failed:
        if on_clip:
            on_clip(row)
    n_frames = 0
    jobs = (delayed(_safe_process)(c, cfg) for c in clips)
    try:
        for result in Parallel(n_jobs=workers, return_as="generator")(jobs):
            if isinstance(result, ClipIssue):
                clip = next(c for c in clips if c.clip_id == result.clip_id and c.dataset == result.dataset)
                row = failed_row(clip, result)
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
        "mepipe_version": __version__, "pipeline": cfg.name, "config_hash": cfg.hash(),
        "source": str(Path(root).resolve()), "versions": environment_versions(),
        "backends": json.loads(file_attrs["backends"]), "model_files": json.loads(file_attrs["model_files"]),
        "clips_ok": len(done), "clips_failed": len(failed), "frames": n_frames,
        "seconds": round(seconds, 3), "workers": workers,
        "failures_by_reason": _count(r.reason for r in failed),
    }
    (out / "build-info.json").write_text(json.dumps(info, indent=2) + "\n")
    shards = sorted(p.name for p in (out / "shards").glob("shard-*.h5"))
    return BuildSummary(out, len(done), len(failed), n_frames, seconds, shards)


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for k in items:
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items()))
