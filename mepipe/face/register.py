"""Aligners: raw frames in, aligned crops out, one per ``align.mode``, all streaming.

An aligner receives the frames of a span in increasing position order (:meth:`Aligner.push`) and
returns ``(position, crop, transform)`` items in the same order, possibly later (a tracking aligner
holds ``align.smoothing // 2`` raw frames to smooth over a centred window); :meth:`Aligner.finish`
returns the rest. Crops are ``(S, S, 3) uint8``, transforms ``(2, 3) float64`` source -> crop.

* ``clip`` (:class:`ClipAligner`): the reference frame's similarity for every frame. Head motion
  inside the clip stays in the crops.
* ``per_frame`` (:class:`PerFrameAligner`): all 68 landmarks tracked in the source frames (each frame
  landmarked in the box of the previous frame's points), a similarity onto the template per frame,
  parameters smoothed over ``align.smoothing`` frames. The mouth and brows take part in the fit, so a
  part of the expression is fitted away as if it were head motion.
* ``register`` (:class:`RegisterAligner`): each frame is first warped with the reference similarity;
  that crop is registered onto the reference crop with a similarity fitted, robustly, on the rigid
  parts of the face only (forehead, temples, jaw contour; never brows, eyes, nose, mouth or cheeks,
  which carry the expression), from dense optical flow; the correction's parameters are smoothed over
  ``align.smoothing`` frames and composed with the reference similarity. Head motion goes, the facial
  action mostly stays (measured by ``benchmarks/stabilisation.py``).

In both tracking modes a frame whose measurement is implausible (``per_frame``: landmark fit error
above ``face.max_fit_error``; both: a jump of more than :data:`MAX_JUMP_IOD` from the last accepted
frame, as a landmarker failure or a frame without the face gives) keeps the last accepted parameters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque

import cv2
import numpy as np

from mepipe.config import PipelineConfig
from mepipe.face.backends import Landmarker
from mepipe.face.detect import FaceFit, to_gray
from mepipe.face.fit import fit_error, landmark_box, rigid_motion, robust_similarity
from mepipe.face.geometry import (
    apply_transform,
    crop_template,
    crop_transform,
    similarity_from_params,
    similarity_params,
)
from mepipe.keyframes import face_mask, region_mask

EXPRESSIVE_RADIUS = 0.45
"""IOD: radius of the discs around the brow, eye, nose and mouth landmarks left out of the registration."""

CHEEK_POLYGONS = (
    (36, 41, 40, 39, 31, 48, 4, 3, 2, 1),
    (45, 46, 47, 42, 35, 54, 12, 13, 14, 15),
)
"""iBUG 68-point outlines of the two cheeks (outer eye corner, lower lid, nose wing, mouth corner, jaw
contour), also left out: the cheek raiser (AU6) and the lip-corner pullers (AU12, AU13, AU14) lift or
pull the whole malar region, both sides alike, which a similarity fit on the cheeks would take for head
motion (with the cheeks in the fit, AU6+12 clips kept 42-64 % of their action; without, 93 % on
average: ``benchmarks/stabilisation.py``)."""

MAX_JUMP_IOD = 25.0
"""% IOD: a frame whose fitted transform moves the face by more than this from the last accepted frame
is treated as a landmark failure (held), not as head motion (real head motion between two frames is a
few % IOD even at 25 fps)."""

Item = tuple[int, np.ndarray, np.ndarray]


def warp_to_crop(rgb: np.ndarray, m: np.ndarray, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """Warp a frame into the ``(size, size, 3) uint8`` crop with the ``(2, 3)`` source->crop transform."""
    if rgb.ndim == 2:
        rgb = cv2.cvtColor(rgb, cv2.COLOR_GRAY2RGB)
    return cv2.warpAffine(
        rgb, m, (size, size), dst=out, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(2, 3)`` transform ``a`` after ``b`` (``x -> a(b(x))``)."""
    out = np.empty((2, 3))
    out[:, :2] = a[:, :2] @ b[:, :2]
    out[:, 2] = a[:, :2] @ b[:, 2] + a[:, 2]
    return out


class Aligner(ABC):
    """See the module docstring. ``reference`` is the similarity of the reference frame."""

    def __init__(self, fit: FaceFit, cfg: PipelineConfig) -> None:
        self.size, self.margin = cfg.align.crop_size, cfg.align.margin
        self.reference = crop_transform(fit.landmarks, self.size, self.margin)
        self.held = 0  # frames whose landmarks were rejected

    @abstractmethod
    def push(self, pos: int, rgb: np.ndarray) -> list[Item]: ...

    def finish(self) -> list[Item]:
        return []


class ClipAligner(Aligner):
    """``align.mode: clip``: one transform for every frame; no lag."""

    def push(self, pos: int, rgb: np.ndarray) -> list[Item]:
        return [(pos, warp_to_crop(rgb, self.reference, self.size), self.reference)]


class _Smoothing(Aligner):
    """Tracking aligners: per-frame parameters, centred moving average, raw frames held for the lag."""

    def __init__(self, fit: FaceFit, cfg: PipelineConfig, landmarker: Landmarker) -> None:
        super().__init__(fit, cfg)
        self.lmk = landmarker
        self.max_fit = cfg.face.max_fit_error
        self.half = max(cfg.align.smoothing, 1) // 2
        self.params: list[np.ndarray] = []
        self.frames: deque[tuple[int, np.ndarray]] = deque()
        self.done = 0  # outputs given so far (index into params)
        self._accepted: np.ndarray | None = None

    @abstractmethod
    def measure(self, rgb: np.ndarray) -> np.ndarray | None:
        """Per-frame ``[log_scale, angle, tx, ty]``, or ``None`` when this frame's landmarks are rejected."""

    @abstractmethod
    def transform(self, params: np.ndarray) -> np.ndarray:
        """Smoothed parameters -> the frame's ``(2, 3)`` source -> crop transform."""

    def push(self, pos: int, rgb: np.ndarray) -> list[Item]:
        p = self.measure(rgb)
        if p is None:
            self.held += 1
            p = self._accepted if self._accepted is not None else self.initial()
        elif self.params:
            p[1] = self.params[-1][1] + (p[1] - self.params[-1][1] + np.pi) % (2 * np.pi) - np.pi
        self._accepted = p
        self.params.append(p)
        self.frames.append((pos, rgb))
        return self._emit(final=False)

    def finish(self) -> list[Item]:
        return self._emit(final=True)

    @abstractmethod
    def initial(self) -> np.ndarray: ...

    def _emit(self, final: bool) -> list[Item]:
        out = []
        n = len(self.params)
        while self.frames and (final or self.done + self.half < n):
            lo, hi = self.done - self.half, self.done + self.half
            idx = np.clip(np.arange(lo, hi + 1), 0, n - 1)
            mean = np.mean([self.params[i] for i in idx], axis=0)
            m = self.transform(mean)
            pos, rgb = self.frames.popleft()
            out.append((pos, warp_to_crop(rgb, m, self.size), m))
            self.done += 1
        return out


class PerFrameAligner(_Smoothing):
    """``align.mode: per_frame`` (see the module docstring)."""

    def __init__(self, fit: FaceFit, cfg: PipelineConfig, landmarker: Landmarker) -> None:
        super().__init__(fit, cfg, landmarker)
        self.prev = np.asarray(fit.landmarks, dtype=np.float64)
        self.template = crop_template(self.size, self.margin)
        self._last_m = self.reference

    def initial(self) -> np.ndarray:
        return similarity_params(self.reference)

    def measure(self, rgb: np.ndarray) -> np.ndarray | None:
        pts = self.lmk.landmarks(to_gray(rgb), landmark_box(self.prev)).astype(np.float64)
        if fit_error(pts) > self.max_fit:
            return None
        m = crop_transform(pts, self.size, self.margin)
        if rigid_motion(apply_transform(self._last_m, pts), self.template) > MAX_JUMP_IOD:
            return None
        self.prev, self._last_m = pts, m
        return similarity_params(m)

    def transform(self, params: np.ndarray) -> np.ndarray:
        return similarity_from_params(params)


def rigid_mask(crop_points: np.ndarray, size: int) -> np.ndarray:
    """``(size, size) bool``: the face (hull + forehead) minus the brows, eyes, nose and mouth discs
    (:data:`EXPRESSIVE_RADIUS`) and the :data:`CHEEK_POLYGONS`; what is left (forehead, temples, the jaw
    contour) moves with the head, not with the expression.

    Args:
        crop_points: ``(68, 2)`` landmarks in the coordinates of the ``size x size`` image.
    """
    pts = np.asarray(crop_points, dtype=np.float64)
    cheeks = np.zeros((size, size), np.uint8)
    cv2.fillPoly(cheeks, [np.round(pts[list(c)]).astype(np.int32) for c in CHEEK_POLYGONS], 1)
    expressive = region_mask(pts, size, ("brows", "eyes", "nose", "mouth"), EXPRESSIVE_RADIUS)
    return face_mask(pts, size) & ~expressive & ~cheeks.astype(bool)


class RegisterAligner(_Smoothing):
    """``align.mode: register`` (see the module docstring).

    The correction of frame t is estimated from the image, not from landmarks: dense optical flow (OpenCV
    DIS) from the reference crop to frame t's reference-warped crop, at 112 px, on every pixel of
    :func:`rigid_mask` (forehead, temples, jaw contour), then a robust similarity fit. dlib's 68 points
    are not used for this because its "rigid" points move with the expression: registered on them,
    only ~50 % of a micro action survived (``benchmarks/stabilisation.py``; README, "Stabilisation").
    """

    ANALYSIS = 112

    def __init__(self, fit: FaceFit, cfg: PipelineConfig, landmarker: Landmarker, reference_rgb: np.ndarray):
        super().__init__(fit, cfg, landmarker)
        a = self.ANALYSIS
        self.ref = self._small(reference_rgb)
        pts = crop_template(self.size, self.margin) * (a / self.size)
        mask = rigid_mask(pts, a)
        self.ys, self.xs = np.nonzero(mask)
        self.grid = np.stack([self.xs, self.ys], 1).astype(np.float64)
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self.k = self.size / a
        self._last_corr = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        self._probe = crop_template(self.size, self.margin)

    def _small(self, rgb: np.ndarray) -> np.ndarray:
        g = to_gray(warp_to_crop(rgb, self.reference, self.size))
        return cv2.resize(g, (self.ANALYSIS, self.ANALYSIS), interpolation=cv2.INTER_AREA)

    def initial(self) -> np.ndarray:
        return np.zeros(4)  # identity correction

    def measure(self, rgb: np.ndarray) -> np.ndarray | None:
        flow = self.dis.calc(self.ref, self._small(rgb), None)
        moved = self.grid + flow[self.ys, self.xs]
        corr, _ = robust_similarity(moved * self.k, self.grid * self.k, keep=0.7)
        jump = rigid_motion(apply_transform(corr, self._probe), apply_transform(self._last_corr, self._probe))
        if not np.all(np.isfinite(corr)) or jump > MAX_JUMP_IOD:
            return None
        self._last_corr = corr
        return similarity_params(corr)

    def transform(self, params: np.ndarray) -> np.ndarray:
        return compose(similarity_from_params(params), self.reference)


def make_aligner(
    fit: FaceFit, cfg: PipelineConfig, landmarker: Landmarker, reference_rgb: np.ndarray
) -> Aligner:
    """The aligner of ``cfg.align.mode``."""
    if cfg.align.mode == "clip":
        return ClipAligner(fit, cfg)
    if cfg.align.mode == "per_frame":
        return PerFrameAligner(fit, cfg, landmarker)
    return RegisterAligner(fit, cfg, landmarker, reference_rgb)
