"""Per-clip processing: frame source -> face stage -> keyframes -> frame selection/encoding.

One clip is processed by one code path with two places to put its crops:

* :func:`stream_clip` (the build: :mod:`mepipe.engine.tasks`) streams every aligned crop, as the face
  stage emits it, into the shard's :class:`~mepipe.shards.clipwriter.ClipWriter` and stores the clip
  there: a worker's memory does not grow with the clip's length;
* :func:`process_clip` (one clip in memory, e.g. ``mepipe predict``) keeps the crops in an
  :class:`~mepipe.face.stage.ArraySink` and returns a :class:`~mepipe.shards.format.ClipOutput`
  holding the stored frames.

Both give bit-identical frames, digests, keyframes and attributes (tested).

Image folders are read by index; a video is decoded once, front to back (a seek into long-GOP H.264
costs a GOP of decoding). After the face stage, the crops are read back from where they went
(:meth:`CropSink.get <mepipe.face.stage.CropSink>`): once in order to compute the motion energy when
keyframes are estimated (the crop-space landmarks it needs are known only when the stage has
finished: in the tracking modes they come from the reference frame's smoothed transform), and a few
for the stability measurement. Then the frames to store are chosen (``storage.frame_step`` /
``max_frames``, keyframes and the reference frame always kept) and encoded (raw or JPEG).

Streaming, raw clips that keep every frame go straight into the shard and are read back from it;
JPEG clips and subsampled clips are held raw by the clip writer (in memory up to
:data:`mepipe.shards.scratch.MEMORY_BYTES`, beyond that in a scratch file inside ``OUT``) until the
kept frames are copied into the shard. With ``flow.enabled`` the flow of the stored frames is
computed and written into the clip group exactly as ``mepipe flow`` does (:mod:`mepipe.flow_stage`).
"""

from __future__ import annotations

import hashlib
import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from mepipe.config import PipelineConfig
from mepipe.face.detect import FaceIssue
from mepipe.face.geometry import apply_transform
from mepipe.face.qa import assess
from mepipe.face.stage import ArraySink, CropSink, FaceResult, align_clip
from mepipe.keyframes import MotionEnergyStream, keep_indices, needs_estimate, position_of, resolve_keyframes
from mepipe.records import ClipIssue, ClipRecord, ManifestRow
from mepipe.shards.clipwriter import ClipWriter, ShardWriteError
from mepipe.shards.format import ClipOutput, encode_jpeg, jpeg_digest
from mepipe.shards.writer import ShardWriter
from mepipe.sources import FrameReadError, open_source


def _issue(clip: ClipRecord, reason: str, message: str) -> ClipIssue:
    return ClipIssue(
        clip.dataset, clip.clip_id, reason, f"clip {clip.clip_id}: {message}", clip.subject, clip.source_path
    )


def too_few_frames(clip: ClipRecord, n: int, min_frames: int) -> ClipIssue:
    """The ``too_few_frames`` failure of a clip with ``n`` usable frames (``build.min_frames``)."""
    return _issue(
        clip,
        "too_few_frames",
        f"only {n} frame(s) in {clip.source_path}; at least build.min_frames={min_frames} are needed "
        "(onset and apex); check the frame folder or the annotated frame range, or lower build.min_frames",
    )


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


@dataclass
class _Aligned:
    """What the face stage left of one clip (its crops are in the sink)."""

    clip: ClipRecord  # videos: with the container's fps
    al: FaceResult
    numbers: np.ndarray  # (T,) int64 source frame numbers of the kept span
    timestamps: np.ndarray  # (T,) float64 ms
    source_sha: list[str]  # (T,) per-file sha256 (frame folders) or []
    file_sha: str
    notes: list[str]


def _align(clip: ClipRecord, cfg: PipelineConfig, sink: CropSink) -> _Aligned | ClipIssue:
    """Open the clip's frames and run the face stage into ``sink``."""
    try:
        src = open_source(clip, decode_threads=cfg.video.decode_threads, decoder=cfg.video.decoder)
    except FrameReadError as exc:
        return _issue(clip, exc.reason, str(exc))
    try:
        numbers = np.asarray(src.frame_numbers, dtype=np.int64)
        if len(numbers) == 0:
            return _issue(clip, "no_frames", "the source has no frames")
        if not src.random_access:
            clip = replace(clip, fps=float(src.fps))
            bad = _video_keyframe_issue(clip, numbers)
            if bad is not None:
                return _issue(clip, *bad)
        al = align_clip(src, clip, numbers, cfg, sink, _required_keyframes(clip, numbers, cfg))
        span = slice(al.first, al.last + 1)
        return _Aligned(
            clip,
            al,
            numbers[span],
            src.timestamps_ms()[span],
            [src.checksum(i) for i in range(al.first, al.last + 1)] if src.random_access else [],
            src.file_checksum(),
            list(src.notes) + al.notes,
        )
    except (FrameReadError, FaceIssue) as exc:
        return _issue(clip, exc.reason, str(exc))
    finally:
        src.close()


def _motion_energy(
    sink: CropSink, al: FaceResult, crop_points: np.ndarray, cfg: PipelineConfig
) -> np.ndarray:
    """The raw motion energy of the kept crops, read back from ``sink`` one at a time, in order."""
    stream = MotionEnergyStream(crop_points, cfg.align.crop_size, cfg.keyframes)
    for pos in range(al.first, al.last + 1):
        stream.add(sink.get(pos))
    return stream.energy()


def _describe(
    a: _Aligned, sink: CropSink, cfg: PipelineConfig
) -> tuple[ClipOutput, np.ndarray | None] | ClipIssue:
    """Keyframes, quality, the frames to keep and every attribute of the clip (all but its frames).

    Returns:
        ``(meta, keep)``: ``meta`` a :class:`ClipOutput` without frames or digest, ``keep`` the
        ascending positions (into the kept span) of the frames to store, ``None`` for all of them.
    """
    clip, al = a.clip, a.al
    t_all = al.n_kept
    if t_all < cfg.build.min_frames:
        return too_few_frames(clip, t_all, cfg.build.min_frames)
    crop_points = apply_transform(al.reference_transform(), al.fit.landmarks)
    energy = (
        _motion_energy(sink, al, crop_points, cfg) if needs_estimate(clip, a.numbers, cfg.keyframes) else None
    )
    kf = resolve_keyframes(clip, a.numbers, energy=energy, fps=clip.fps, cfg=cfg.keyframes)
    notes = list(a.notes)
    if kf.note:
        notes.append(kf.note)
    quality = assess(al, sink, cfg, keyframes=(kf.onset_idx + al.first, kf.apex_idx + al.first))
    st = cfg.storage
    ref_idx = al.ref_pos - al.first
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

    extra_arrays: dict[str, np.ndarray] = {}
    extra_attrs: dict[str, object] = {
        "face_score": quality.face_score,
        "fit_error": quality.fit_error,
        "stability": quality.stability,
        "qa": quality.qa,
        "face_span": f"{int(a.numbers[0])}-{int(a.numbers[-1])}" if al.trimmed else "",
        "face_referee": float(al.fit.referee),
    }
    if kf.curve is not None:
        extra_arrays["motion_energy"] = sub(kf.curve).astype(np.float32)
        extra_attrs["keyframe_snr"] = float(kf.snr) if kf.snr is not None and np.isfinite(kf.snr) else -1.0
    if not whole:
        extra_attrs["source_n_frames"] = t_all
    b = al.fit.box
    files = list(clip.frame_files) if clip.frame_files else []
    size = cfg.align.crop_size
    meta = ClipOutput(
        clip=clip,
        frames=None,  # type: ignore[arg-type]  (filled by process_clip; streamed clips have none)
        frame_numbers=sub(a.numbers),
        transforms=al.transforms if al.transforms.ndim == 2 else sub(al.transforms),
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
        source_sha256=[a.source_sha[i] for i in keep] if a.source_sha else [],
        frames_sha256="",
        extra_arrays=extra_arrays,
        timestamps_ms=sub(a.timestamps),
        frame_shape=(size, size, 3),
        jpeg_quality=st.jpeg_quality if st.encoding == "jpeg" else 0,
        source_file_sha256=a.file_sha,
        notes="; ".join(notes),
        extra_attrs=extra_attrs,
    )
    return meta, None if whole else keep


def process_clip(clip: ClipRecord, cfg: PipelineConfig) -> ClipOutput | ClipIssue:
    """Align one clip, find its keyframes, keep the configured frames and encode them, in memory.

    For one clip at a time (``mepipe predict``): every crop of the clip is held in memory. Builds
    use :func:`stream_clip`, which stores the same clip with bounded memory.

    Returns:
        The :class:`ClipOutput` holding the stored frames (``frames`` raw, or ``frames_jpeg``), or a
        :class:`ClipIssue` with the reason it cannot be built.
    """
    import cv2

    cv2.setNumThreads(1)
    sink = ArraySink()
    a = _align(clip, cfg, sink)
    if isinstance(a, ClipIssue):
        return a
    described = _describe(a, sink, cfg)
    if isinstance(described, ClipIssue):
        return described
    meta, keep = described
    frames = sink.frames()
    if keep is not None:
        frames = frames[keep]
    if cfg.storage.encoding == "jpeg":
        blobs = encode_jpeg(frames, cfg.storage.jpeg_quality)
        return replace(meta, frames_jpeg=blobs, frames_sha256=jpeg_digest(blobs))
    frames = np.ascontiguousarray(frames)
    return replace(
        meta, frames=frames, frames_sha256=hashlib.sha256(memoryview(frames).cast("B")).hexdigest()
    )


class WriterSink:
    """A :class:`~mepipe.face.stage.CropSink` streaming each crop into a :class:`ClipWriter` and
    reading crops back from it (positions are the face stage's, the writer counts from 0)."""

    def __init__(self, writer: ClipWriter) -> None:
        self.writer = writer
        self.first = -1

    def add(self, position: int, crop: np.ndarray) -> None:
        if self.first < 0:
            self.first = position
        expected = self.first + self.writer.appended
        if position != expected:
            raise ValueError(
                f"crops must arrive in contiguous increasing order: got {position}, expected {expected}"
            )
        self.writer.append(crop)

    def get(self, position: int) -> np.ndarray:
        k = position - self.first
        if self.first < 0 or not 0 <= k < self.writer.appended:
            raise IndexError(f"position {position} was not added")
        return self.writer.read(k)


def _flow_writer(meta: ClipOutput, cfg: PipelineConfig):
    """Writes the clip's optical flow into its finished group, as ``mepipe flow`` does (read from the
    stored frames, so JPEG clips get the flow of their decoded JPEGs)."""
    from mepipe.flow_stage import clip_flows, write_clip_flows
    from mepipe.shards.reader import read_frame

    def write(group) -> None:
        made = clip_flows(
            lambda i: read_frame(group, i),
            meta.onset_idx,
            meta.apex_idx,
            meta.offset_idx,
            meta.n_frames,
            cfg.flow,
        )
        write_clip_flows(group, made, cfg.flow, meta.frame_numbers)

    return write


def stream_clip(
    clip: ClipRecord,
    cfg: PipelineConfig,
    shards: ShardWriter,
    attrs: Callable[[ClipOutput], dict[str, object]] | None = None,
) -> tuple[ClipOutput, str] | ClipIssue:
    """Process one clip and store it in the shard being written, streaming its crops (the build's path).

    Args:
        shards: the task's shard writer; the clip becomes one group of its current shard.
        attrs: more group attributes made from the clip's finished metadata (the build engine's
            manifest row and fingerprint), written with the others.

    Returns:
        ``(meta, shard)``: the stored clip's metadata (no frames; ``frames_sha256`` set) and the shard
        file name holding it; or a :class:`ClipIssue` (then the shard holds nothing of the clip).

    Raises:
        ShardWriteError: writing the shard or a scratch file failed (the build stops).
    """
    import cv2

    cv2.setNumThreads(1)
    st, size = cfg.storage, cfg.align.crop_size
    cw = shards.begin_clip(
        clip,
        frame_shape=(size, size, 3),
        encoding=st.encoding,
        jpeg_quality=st.jpeg_quality,
        buffered=st.encoding == "jpeg" or st.frame_step > 1 or st.max_frames > 0,
    )
    try:
        sink = WriterSink(cw)
        a = _align(clip, cfg, sink)
        described = a if isinstance(a, ClipIssue) else _describe(a, sink, cfg)
        if isinstance(described, ClipIssue):
            cw.abort()
            return described
        meta, keep = described
        cw.store(keep)
        meta.frames_sha256 = cw.digest
        if attrs is not None:
            meta.extra_attrs.update(attrs(meta))
        name = cw.finish(meta, then=_flow_writer(meta, cfg) if cfg.flow.enabled else None)
    except BaseException:
        cw.abort()
        raise
    return meta, name


def safe_stream(
    clip: ClipRecord,
    cfg: PipelineConfig,
    shards: ShardWriter,
    attrs: Callable[[ClipOutput], dict[str, object]] | None = None,
) -> tuple[ClipOutput, str] | ClipIssue:
    """:func:`stream_clip` that turns any unexpected exception into a failed row (the build goes on);
    a failure to write the shard (:class:`ShardWriteError`) still stops the task."""
    try:
        return stream_clip(clip, cfg, shards, attrs)
    except ShardWriteError:
        raise
    except Exception as exc:  # noqa: BLE001  (recorded with its traceback, never swallowed silently)
        tb = traceback.format_exc(limit=3).strip().splitlines()[-1]
        return _issue(clip, "error", f"unexpected {type(exc).__name__}: {exc} ({tb}); please report it")


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
