"""Landmark-fit measures (pure functions): fit error against the template, rigid points, robust fits.

Units: residuals are in **% of the inter-ocular distance (IOD)** of the shape they are measured on, the
unit MER papers use for landmark motion (a micro-expression moves facial points by a few % IOD).
Landmarks are ``(68, 2)`` float arrays of ``(x, y)`` pixels (iBUG numbering); transforms ``(2, 3)``.
"""

from __future__ import annotations

import numpy as np

from mepipe.face.backends import Box
from mepipe.face.geometry import (
    apply_transform,
    crop_template,
    estimate_similarity,
    inter_ocular,
    unit_template,
)

RIGID_POINTS: tuple[int, ...] = (0, 1, 2, 3, 13, 14, 15, 16, 27, 28, 29, 30, 31, 33, 35, 36, 39, 42, 45)
"""Points that move with the head but hardly with facial action: the upper jaw contour (0-3, 13-16,
near the ears; the lower jaw moves with AU26), the nose bridge (27-30) and base (31, 33, 35), and the
eye corners (36, 39, 42, 45). Brows (17-26), eyelids and the mouth (48-67) carry the expression and are
left out."""

BOX_OFFSETS = (-0.08, -0.07, -0.05, -0.03)
"""A dlib-like detector box from the landmark box: left, top, right, bottom offsets as fractions of the
landmark box width (mean over the 7 faces of the astronaut photo and insightface's ``t1.jpg``, measured
with dlib HOG + dlib-68: the detector box sits ~5 % inside the landmark box at the bottom)."""


def fit_error(landmarks: np.ndarray) -> float:
    """RMS residual of ``(68, 2)`` landmarks after the best similarity onto the canonical template, % IOD.

    0 for a shape identical to the template (up to rotation, scale and translation). Measured with
    dlib-68: real faces 2-27 % (pose, expression and identity all count), and a region with no face at
    all ~9 % (dlib's predictor always returns a face-shaped set), so this measure alone cannot tell a
    face from a non-face; see :mod:`mepipe.face.detect`.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    if not np.all(np.isfinite(pts)):
        return float("inf")
    t = unit_template()
    try:
        m = estimate_similarity(pts, t)
    except ValueError:
        return float("inf")
    r = np.linalg.norm(apply_transform(m, pts) - t, axis=1)
    return float(100.0 * np.sqrt((r**2).mean()) / inter_ocular(t))


def landmark_box(pts: np.ndarray) -> Box:
    """A detector-like box around ``(68, 2)`` landmarks (:data:`BOX_OFFSETS`), for landmarking a frame
    from the previous frame's points or from the template."""
    p = np.asarray(pts, dtype=np.float64)
    lo, hi = p.min(0), p.max(0)
    w = hi[0] - lo[0]
    dl, dt, dr, db = BOX_OFFSETS
    return Box(lo[0] + dl * w, lo[1] + dt * w, hi[0] + dr * w, hi[1] + db * w)


def template_box(size: int, margin: float) -> Box:
    """Where a detector would put the template face in a ``size x size`` crop of ``margin``."""
    return landmark_box(crop_template(size, margin))


def robust_similarity(
    src: np.ndarray, dst: np.ndarray, keep: float = 0.75, rounds: int = 2
) -> tuple[np.ndarray, float]:
    """Similarity ``src -> dst`` fitted again on the ``keep`` fraction of points with the smallest
    residuals (``rounds`` times), so one moving region does not drag the fit.

    Args:
        src, dst: ``(N, 2)`` points, N >= 3.

    Returns:
        ``(m, rms)``: the ``(2, 3)`` transform and the RMS residual of the kept points, in ``dst`` units.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    sel = np.ones(len(src), bool)
    m = estimate_similarity(src, dst)
    for _ in range(rounds):
        res = np.linalg.norm(apply_transform(m, src) - dst, axis=1)
        k = max(3, int(np.ceil(keep * len(src))))
        sel = res <= np.partition(res, k - 1)[k - 1]
        m = estimate_similarity(src[sel], dst[sel])
    res = np.linalg.norm(apply_transform(m, src[sel]) - dst[sel], axis=1)
    return m, float(np.sqrt((res**2).mean()))


def rigid_motion(points: np.ndarray, reference: np.ndarray) -> float:
    """Median displacement of the :data:`RIGID_POINTS` between two ``(68, 2)`` shapes in the same
    (crop) coordinates, in % of the reference's IOD: the head motion left between them."""
    p = np.asarray(points, dtype=np.float64)[list(RIGID_POINTS)]
    r = np.asarray(reference, dtype=np.float64)[list(RIGID_POINTS)]
    return float(100.0 * np.median(np.linalg.norm(p - r, axis=1)) / inter_ocular(reference))
