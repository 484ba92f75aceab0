"""The face stage drivers: find the reference face of a clip, then align every frame with it.

Two drivers share one result type (:class:`Aligned`): :func:`align_random_access` for frame
folders (read by index) and :func:`align_sequential` for videos (decoded once, front to back, with
the frames before the reference kept until the face is found). ``build`` calls :func:`align_clip`,
which picks the driver from the frame source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mepipe.config import PipelineConfig
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
from mepipe.keyframes import position_of
from mepipe.records import ClipRecord
from mepipe.sources import FrameReadError, FrameSource


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


def align_random_access(
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


def align_sequential(src: FrameSource, clip: ClipRecord, numbers: np.ndarray, cfg: PipelineConfig) -> Aligned:
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


def align_clip(src: FrameSource, clip: ClipRecord, numbers: np.ndarray, cfg: PipelineConfig) -> Aligned:
    """Run the face stage on one clip: sequential decode for videos, indexed reads for frame folders."""
    if src.random_access:
        return align_random_access(src, clip, numbers, cfg)
    return align_sequential(src, clip, numbers, cfg)
