"""Per-clip processing: frame source -> face stage -> keyframes -> frame selection/encoding.

:func:`process_clip` turns one adapter :class:`~mepipe.records.ClipRecord` into the
:class:`~mepipe.shards.writer.ClipOutput` to store, or a :class:`~mepipe.records.ClipIssue` saying
why it cannot be built. It runs in a build worker; ``mepipe.build`` schedules it and stores the result.

Image folders are read by index; a video is decoded once, front to back (a seek into long-GOP H.264
costs a GOP of decoding). Keyframes are resolved (annotated / estimated from the aligned crops /
uniform), the frames to store are chosen (``storage.frame_step``/``max_frames``, keyframes and the
reference frame always kept) and encoded (raw or JPEG) in the worker.
"""

from __future__ import annotations

import hashlib
import json
import traceback
from dataclasses import replace

import numpy as np

from mepipe.config import PipelineConfig
from mepipe.face.detect import FaceIssue
from mepipe.face.geometry import apply_transform
from mepipe.face.qa import assess
from mepipe.face.stage import ArraySink, align_clip
from mepipe.keyframes import keep_indices, position_of, resolve_keyframes
from mepipe.records import ClipIssue, ClipRecord, ManifestRow
from mepipe.shards.format import ClipOutput, encode_jpeg, jpeg_digest
from mepipe.sources import FrameReadError, open_source


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


def _required_keyframes(clip: ClipRecord, numbers: np.ndarray, cfg: PipelineConfig) -> dict[str, int]:
    """Annotated keyframes (positions) that must show the face: used unless keyframes are estimated/uniform."""
    if cfg.keyframes.mode != "annotated":
        return {}
    out = {}
    for label in ("onset", "apex", "offset"):
        pos = position_of(numbers, getattr(clip, label))
        if pos is not None:
            out[label] = pos
    return out


def process_clip(clip: ClipRecord, cfg: PipelineConfig) -> ClipOutput | ClipIssue:
    """Align one clip, find its keyframes, keep the configured frames and encode them.

    Image folders are read by index; videos are decoded once, in order (see
    :func:`mepipe.face.stage.align_sequential`).

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
        src = open_source(clip, decode_threads=cfg.video.decode_threads, decoder=cfg.video.decoder)
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
        sink = ArraySink()
        al = align_clip(src, clip, numbers, cfg, sink, _required_keyframes(clip, numbers, cfg))
        span = slice(al.first, al.last + 1)
        kept_numbers = numbers[span]
        t_all = al.n_kept
        timestamps = src.timestamps_ms()[span]
        source_sha = [src.checksum(i) for i in range(al.first, al.last + 1)] if src.random_access else []
        file_sha = src.file_checksum()
        notes = list(src.notes) + al.notes
    except FrameReadError as exc:
        return issue(exc.reason, str(exc))
    except FaceIssue as exc:
        return issue(exc.reason, str(exc))
    finally:
        src.close()
    crop_points = apply_transform(al.reference_transform(), al.fit.landmarks)
    all_frames = sink.frames()
    ref_idx = al.ref_pos - al.first
    kf = resolve_keyframes(
        clip, kept_numbers, frames=all_frames, crop_points=crop_points, fps=clip.fps, cfg=cfg.keyframes
    )
    if kf.note:
        notes.append(kf.note)
    quality = assess(al, sink, cfg, keyframes=(kf.onset_idx + al.first, kf.apex_idx + al.first))
    st = cfg.storage
    keep = keep_indices(
        t_all,
        step=st.frame_step,
        max_frames=st.max_frames,
        always=(kf.onset_idx, kf.apex_idx, kf.offset_idx, ref_idx),
    )
    whole = len(keep) == t_all

    def sub(arr: np.ndarray) -> np.ndarray:
        return arr if whole else arr[keep]

    def idx(i: int) -> int:
        return int(np.searchsorted(keep, i))

    frames = sub(all_frames)
    transforms = al.transforms if al.transforms.ndim == 2 else sub(al.transforms)
    extra_arrays: dict[str, np.ndarray] = {}
    extra_attrs: dict[str, object] = {
        "face_score": quality.face_score,
        "fit_error": quality.fit_error,
        "stability": quality.stability,
        "qa": quality.qa,
        "face_span": f"{int(kept_numbers[0])}-{int(kept_numbers[-1])}" if al.trimmed else "",
        "face_referee": float(al.fit.referee),
    }
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
        frame_numbers=sub(kept_numbers),
        transforms=transforms,
        landmarks_ref=al.fit.landmarks,
        reference_idx=idx(ref_idx),
        face_box=np.array([b.left, b.top, b.right, b.bottom]),
        faces_found=al.fit.faces_found,
        face_note=al.note,
        onset_idx=idx(kf.onset_idx),
        apex_idx=idx(kf.apex_idx),
        offset_idx=idx(kf.offset_idx),
        keyframe_source=kf.source,
        source_files=[files[al.first + i] for i in keep] if files else [],
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


def safe_process(clip: ClipRecord, cfg: PipelineConfig) -> ClipOutput | ClipIssue:
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
        face_score=float(out.extra_attrs.get("face_score", -1.0)),
        fit_error=float(out.extra_attrs.get("fit_error", -1.0)),
        stability=float(out.extra_attrs.get("stability", -1.0)),
        qa=str(out.extra_attrs.get("qa", "")),
        face_span=str(out.extra_attrs.get("face_span", "")),
        frames_sha256=out.frames_sha256,
        source_path=c.source_path,
        extra=json.dumps(c.extra, sort_keys=True),
    )
