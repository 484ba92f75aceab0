"""The face stage drivers: find the clip's face, keep the span of frames that show it, emit aligned crops.

Two drivers, one contract (:func:`align_clip` picks the driver from the frame source):

* :func:`align_random_access` (frame folders, read by index);
* :func:`align_sequential` (videos, decoded front to back; the frames before the reference are held raw
  up to ``video.buffer_mb``, beyond that they are decoded again).

Steps: the reference face is found on the configured reference frame or the next ones
(:func:`mepipe.face.detect.locate_face`: the right face, or ``no_face`` / ``implausible_face`` naming
the frames tried); the span of frames showing that face is grown from the reference both ways with
presence checks (:mod:`mepipe.face.presence`; frames before a late face, after the person leaves or
after a scene cut are not kept); each kept frame is aligned by the mode's aligner
(:mod:`mepipe.face.register`) and handed to the sink. Annotated keyframes (``required``) outside the span
fail the clip with ``face_lost``.

**The sink protocol** (:class:`CropSink`): ``add(position, crop)`` is called once per kept position,
positions strictly increasing by one from the span's first position to its last (a contiguous span
that includes the reference), crops ``(S, S, 3) uint8`` that the sink may keep (the driver does not
reuse the array). ``get(position)`` must return a crop already added (used after the stage, e.g. to
measure stability). Nothing is added after the driver returns or raises; when it raises, the crops
already added belong to no result and must be discarded. The drivers hold, besides the sink, at most:
the pre-reference raw frames (videos, ``video.buffer_mb``), ``face.check_every + face.lost_frames``
crops awaiting a presence check, and ``align.smoothing // 2`` raw frames for temporal smoothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from mepipe.config import PipelineConfig
from mepipe.face.backends import get_detector, get_landmarker
from mepipe.face.detect import FaceFit, FaceIssue, locate_face, to_gray
from mepipe.face.presence import ForwardSpan, PresenceCheck, scan_back
from mepipe.face.register import make_aligner, warp_to_crop
from mepipe.keyframes import position_of
from mepipe.records import ClipRecord
from mepipe.sources import FrameReadError, FrameSource


class CropSink(Protocol):
    """Receives the aligned crops of one clip (see the module docstring for the guarantees)."""

    def add(self, position: int, crop: np.ndarray) -> None: ...

    def get(self, position: int) -> np.ndarray: ...


class ArraySink:
    """A :class:`CropSink` keeping every crop in memory; :meth:`frames` stacks them ``(T, S, S, 3)``."""

    def __init__(self) -> None:
        self._crops: list[np.ndarray] = []
        self.first = -1

    def add(self, position: int, crop: np.ndarray) -> None:
        if self.first < 0:
            self.first = position
        expected = self.first + len(self._crops)
        if position != expected:
            raise ValueError(
                f"crops must arrive in contiguous increasing order: got {position}, expected {expected}"
            )
        self._crops.append(crop)

    def get(self, position: int) -> np.ndarray:
        k = position - self.first
        if not 0 <= k < len(self._crops):
            raise IndexError(
                f"position {position} was not added (kept {self.first}..{self.first + len(self) - 1})"
            )
        return self._crops[k]

    def __len__(self) -> int:
        return len(self._crops)

    def frames(self) -> np.ndarray:
        return np.stack(self._crops) if self._crops else np.empty((0, 0, 0, 3), np.uint8)


@dataclass
class FaceResult:
    """The face stage's result for one clip.

    Attributes:
        ref_pos: source position of the reference frame; ``fit`` the face found there.
        first, last: source positions of the kept span (inclusive; the sink holds exactly these).
        transforms: ``(2, 3)`` (``clip`` mode) or ``(last - first + 1, 2, 3)`` float64 source -> crop.
        note: the face note (what was chosen, a moved reference frame).
        notes: non-fatal findings for the manifest (truncation, isolated frames without the face ...).
        n_source: positions the source delivered (fewer than its length when a video was truncated).
        glitches: positions of isolated failed presence checks (kept).
    """

    ref_pos: int
    fit: FaceFit
    first: int
    last: int
    transforms: np.ndarray
    note: str
    notes: list[str] = field(default_factory=list)
    n_source: int = 0
    glitches: list[int] = field(default_factory=list)

    @property
    def n_kept(self) -> int:
        return self.last - self.first + 1

    @property
    def trimmed(self) -> bool:
        """Frames without the face were left out (truncation of a damaged video does not count)."""
        return self.first > 0 or self.last < self.n_source - 1

    def reference_transform(self) -> np.ndarray:
        return self.transforms if self.transforms.ndim == 2 else self.transforms[self.ref_pos - self.first]


def reference_start(clip: ClipRecord, numbers: np.ndarray, cfg: PipelineConfig) -> int:
    """Position of the configured reference frame (onset, apex or first; the first when not annotated)."""
    want = {"onset": clip.onset, "apex": clip.apex, "first": None}[cfg.face.reference]
    start = position_of(numbers, want) if want is not None else 0
    return 0 if start is None else start


def _moved_note(note: str, numbers: np.ndarray, wanted: int, ref_pos: int) -> str:
    if ref_pos == wanted:
        return note
    moved = f"no face on frame {int(numbers[wanted])}, used frame {int(numbers[ref_pos])}"
    return f"{note}; {moved}" if note else moved


def _search_failed(
    last: FaceIssue | None, numbers: np.ndarray, lo: int, hi: int, cfg: PipelineConfig
) -> FaceIssue:
    reason = last.reason if last is not None else "no_face"
    what = f"{last}" if last is not None else f"{cfg.face.detector} found no face"
    return FaceIssue(
        reason, f"{what} on frames {int(numbers[lo])}..{int(numbers[hi - 1])} (searched {hi - lo} frames)"
    )


def _require(required: dict[str, int], first: int, last: int, numbers: np.ndarray) -> None:
    for label, pos in required.items():
        if not first <= pos <= last:
            raise FaceIssue(
                "face_lost",
                f"annotated {label} frame {int(numbers[pos])} is outside the frames that show the face "
                f"({int(numbers[first])}..{int(numbers[last])}); check the clip (the face appears late, leaves "
                "or the scene cuts) or its annotation",
            )


class _SpanWriter:
    """Aligner + forward presence + sink for positions ``first..``, fed in order."""

    def __init__(
        self, fit: FaceFit, ref_pos: int, ref_rgb: np.ndarray, first: int, cfg: PipelineConfig, sink: CropSink
    ):
        lmk = get_landmarker(cfg.face.landmarker, cfg.face.options)
        self.aligner = make_aligner(fit, cfg, lmk, ref_rgb)
        self.presence = PresenceCheck(
            warp_to_crop(ref_rgb, self.aligner.reference, cfg.align.crop_size), cfg.face, cfg.align.margin
        )
        self.span = ForwardSpan(ref_pos, self.presence, cfg.face.check_every, cfg.face.lost_frames)
        self.ref_pos, self.sink, self.first = ref_pos, sink, first
        self.transforms: list[np.ndarray] = []
        self._m: dict[int, np.ndarray] = {}
        self.last = first - 1

    def push(self, pos: int, rgb: np.ndarray) -> bool:
        """Feed position ``pos``; ``False`` once the face is lost (feed nothing more)."""
        for item in self.aligner.push(pos, rgb):
            self._take(*item)
        return not self.span.lost

    def finish(self) -> None:
        for item in self.aligner.finish():
            self._take(*item)
        for p, crop in self.span.finish():
            self._store(p, crop)

    def _take(self, pos: int, crop: np.ndarray, m: np.ndarray) -> None:
        self._m[pos] = m
        if pos < self.ref_pos:  # verified by the backward scan
            self._store(pos, crop)
            return
        for p, c in self.span.push(pos, crop):
            self._store(p, c)

    def _store(self, pos: int, crop: np.ndarray) -> None:
        self.sink.add(pos, crop)
        self.transforms.append(self._m.pop(pos))
        self.last = pos

    def result_transforms(self, mode: str) -> np.ndarray:
        return self.aligner.reference if mode == "clip" else np.stack(self.transforms)


def _finish(
    w: _SpanWriter,
    fit: FaceFit,
    ref_pos: int,
    first: int,
    glitches: list[int],
    note: str,
    notes: list[str],
    n_source: int,
    cfg: PipelineConfig,
    numbers: np.ndarray,
    required: dict[str, int],
) -> FaceResult:
    w.finish()
    _require(required, first, w.last, numbers)
    glitches = sorted(glitches + w.span.glitches)
    if glitches:
        shown = ", ".join(str(int(numbers[p])) for p in glitches[:5])
        notes.append(f"face not confirmed on isolated frame(s) {shown} (kept)")
    if w.aligner.held:
        notes.append(f"{w.aligner.held} frame(s) with implausible landmarks kept the previous alignment")
    return FaceResult(
        ref_pos, fit, first, w.last, w.result_transforms(cfg.align.mode), note, notes, n_source, glitches
    )


def _backward_oracle(frame_of, m: np.ndarray, presence: PresenceCheck, size: int):
    cache: dict[int, bool] = {}

    def present(p: int) -> bool:
        if p not in cache:
            cache[p] = presence(warp_to_crop(frame_of(p), m, size))
        return cache[p]

    return present


def align_random_access(
    src: FrameSource,
    clip: ClipRecord,
    numbers: np.ndarray,
    cfg: PipelineConfig,
    sink: CropSink,
    required: dict[str, int] | None = None,
) -> FaceResult:
    """Image folders: find the reference among ``face.search_frames`` frames, grow the span, emit crops."""
    required = required or {}
    n = len(numbers)
    det = get_detector(cfg.face.detector, cfg.face.upsample, cfg.face.options)
    lmk = get_landmarker(cfg.face.landmarker, cfg.face.options)
    start = reference_start(clip, numbers, cfg)
    stop = min(n, start + cfg.face.search_frames + 1)
    last_issue: FaceIssue | None = None
    found: tuple[int, np.ndarray, FaceFit] | None = None
    for pos in range(start, stop):
        rgb = src.read(pos)
        try:
            found = (pos, rgb, locate_face(to_gray(rgb), det, lmk, cfg.face))
            break
        except FaceIssue as exc:
            last_issue = exc
    if found is None:
        raise _search_failed(last_issue, numbers, start, stop, cfg)
    ref_pos, ref_rgb, fit = found
    w = _SpanWriter(fit, ref_pos, ref_rgb, 0, cfg, sink)
    present = _backward_oracle(src.read, w.aligner.reference, w.presence, cfg.align.crop_size)
    first, glitches = scan_back(ref_pos, present, cfg.face.check_every, cfg.face.lost_frames)
    _require({k: p for k, p in required.items() if p < ref_pos}, first, n - 1, numbers)
    w.first = first
    for pos in range(first, n):
        if not w.push(pos, ref_rgb if pos == ref_pos else src.read(pos)):
            break
    note = _moved_note(fit.note, numbers, start, ref_pos)
    return _finish(w, fit, ref_pos, first, glitches, note, [], n, cfg, numbers, required)


def align_sequential(
    src: FrameSource,
    clip: ClipRecord,
    numbers: np.ndarray,
    cfg: PipelineConfig,
    sink: CropSink,
    required: dict[str, int] | None = None,
) -> FaceResult:
    """Videos: decode front to back (see the module docstring).

    The reference search starts at the configured frame and goes on for ``video.search_frames`` frames
    (``None``: until a face is found). Frames before the reference are kept raw within
    ``video.buffer_mb``; when they do not fit, the start is decoded twice more (once to find where the
    face span begins, once to emit it). A decode error fails the clip, or with
    ``video.on_decode_error: truncate`` ends it there once the face was found.
    """
    required = required or {}
    n = len(numbers)
    start = reference_start(clip, numbers, cfg)
    limit = cfg.video.search_frames
    stop_search = n if limit is None else min(n, start + limit + 1)
    det = get_detector(cfg.face.detector, cfg.face.upsample, cfg.face.options)
    lmk = get_landmarker(cfg.face.landmarker, cfg.face.options)
    budget = cfg.video.buffer_mb * 2**20
    raw: list[np.ndarray] = []
    buffered, spilled = 0, False
    last_issue: FaceIssue | None = None
    found: tuple[int, np.ndarray, FaceFit] | None = None
    frames: Iterator[tuple[int, np.ndarray]] = src.iter_range(0, n)
    for pos, rgb in frames:
        if start <= pos < stop_search:
            try:
                found = (pos, rgb, locate_face(to_gray(rgb), det, lmk, cfg.face))
                break
            except FaceIssue as exc:
                last_issue = exc
        if pos + 1 >= stop_search:
            break
        if not spilled and buffered + rgb.nbytes <= budget:
            raw.append(rgb)
            buffered += rgb.nbytes
        else:
            spilled, raw = True, []
    if found is None:
        raise _search_failed(last_issue, numbers, start, min(stop_search, n), cfg)
    ref_pos, ref_rgb, fit = found
    w = _SpanWriter(fit, ref_pos, ref_rgb, 0, cfg, sink)
    every, lost, size = cfg.face.check_every, cfg.face.lost_frames, cfg.align.crop_size
    if spilled:
        frames.close()  # type: ignore[attr-defined]
        table = [
            w.presence(warp_to_crop(f, w.aligner.reference, size)) for _, f in src.iter_range(0, ref_pos)
        ]
        first, glitches = scan_back(ref_pos, table.__getitem__, every, lost)
        frames = src.iter_range(first, n)
    else:
        present = _backward_oracle(raw.__getitem__, w.aligner.reference, w.presence, size)
        first, glitches = scan_back(ref_pos, present, every, lost)
    _require({k: p for k, p in required.items() if p < ref_pos}, first, n - 1, numbers)
    w.first = first
    notes: list[str] = []
    good = ref_pos + 1
    try:
        if not spilled:
            for pos in range(first, ref_pos):
                w.push(pos, raw[pos])
            raw = []
            w.push(ref_pos, ref_rgb)
        for pos, rgb in frames:
            good = pos + 1
            if pos == ref_pos:
                rgb = ref_rgb
            if pos >= first and not w.push(pos, rgb):
                break
    except FrameReadError as exc:
        if cfg.video.on_decode_error != "truncate" or good < 2:
            raise
        notes.append(f"truncated: {exc}; kept the {good} frames before it")
        n = good
    note = _moved_note(fit.note, numbers, start, ref_pos)
    return _finish(w, fit, ref_pos, first, glitches, note, notes, n, cfg, numbers, required)


def align_clip(
    src: FrameSource,
    clip: ClipRecord,
    numbers: np.ndarray,
    cfg: PipelineConfig,
    sink: CropSink,
    required: dict[str, int] | None = None,
) -> FaceResult:
    """Run the face stage on one clip: sequential decode for videos, indexed reads for frame folders.

    Args:
        src: the clip's frames; ``numbers`` ``(N,) int64`` their source frame numbers.
        sink: receives the kept crops (see :class:`CropSink`).
        required: ``{label: position}`` of annotated keyframes that must show the face.

    Raises:
        FaceIssue: ``no_face``, ``implausible_face``, ``face_too_small``, ``several_faces``, ``face_lost``.
        FrameReadError: a frame that cannot be decoded (unless truncated, see :func:`align_sequential`).
    """
    if src.random_access:
        return align_random_access(src, clip, numbers, cfg, sink, required)
    return align_sequential(src, clip, numbers, cfg, sink, required)
