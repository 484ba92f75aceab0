"""Pure geometry of face alignment: similarity estimation, the canonical template, crop matrices.

Conventions: points are ``(N, 2) float`` arrays of ``(x, y)`` pixel coordinates; a transform is a
``(2, 3) float64`` matrix ``M`` mapping a source point ``p`` to ``M[:, :2] @ p + M[:, 2]`` (the
matrix ``cv2.warpAffine`` takes).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

TEMPLATE_FILE = Path(__file__).with_name("template68.json")
LEFT_EYE = slice(36, 42)  # subject's right eye, image left (iBUG 68-point numbering)
RIGHT_EYE = slice(42, 48)


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) ``src -> dst``.

    Umeyama's closed form. Args: ``src``, ``dst`` ``(N, 2)`` with N >= 2. Returns ``(2, 3) float64``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(
            f"need two (N, 2) point arrays of equal shape, N >= 2; got {src.shape} and {dst.shape}"
        )
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    if var_s <= 0:
        raise ValueError("source points are all identical; cannot estimate a similarity")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[1, 1] = -1
    rot = u @ fix @ vt
    scale = np.trace(np.diag(sig) @ fix) / var_s
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def apply_transform(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map ``(N, 2)`` points through a ``(2, 3)`` transform."""
    pts = np.asarray(pts, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def similarity_params(m: np.ndarray) -> np.ndarray:
    """``(2,3)`` similarity -> ``[log_scale, angle, tx, ty]`` (for smoothing over time)."""
    a, b = m[0, 0], m[1, 0]
    return np.array([np.log(np.hypot(a, b)), np.arctan2(b, a), m[0, 2], m[1, 2]])


def similarity_from_params(p: np.ndarray) -> np.ndarray:
    s, th = np.exp(p[0]), p[1]
    c, n = s * np.cos(th), s * np.sin(th)
    return np.array([[c, -n, p[2]], [n, c, p[3]]])


def smooth_transforms(ms: np.ndarray, window: int) -> np.ndarray:
    """Moving-average smoothing of per-frame similarities ``(T, 2, 3)`` over ``window`` frames.

    Parameters (log-scale, unwrapped angle, translation) are averaged with edge padding, so a
    constant sequence is returned unchanged.
    """
    if window <= 1 or len(ms) < 2:
        return np.asarray(ms, dtype=np.float64).copy()
    p = np.stack([similarity_params(m) for m in ms])
    p[:, 1] = np.unwrap(p[:, 1])
    half = window // 2
    padded = np.pad(p, ((half, half), (0, 0)), mode="edge")
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    sm = np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(4)], axis=1)
    return np.stack([similarity_from_params(q) for q in sm])


@lru_cache(maxsize=1)
def unit_template() -> np.ndarray:
    """The canonical 68-point template, ``(68, 2) float64``: eyes level, landmark box centred on 0,
    landmark box width 1 (see ``template68.json`` for how it was made)."""
    data = json.loads(TEMPLATE_FILE.read_text())
    return np.asarray(data["points"], dtype=np.float64)


def normalise_template(points: np.ndarray) -> np.ndarray:
    """Rotate ``(68, 2)`` landmarks so the eye centres are level, centre their box on 0, width 1."""
    pts = np.asarray(points, dtype=np.float64)
    le, re = pts[LEFT_EYE].mean(0), pts[RIGHT_EYE].mean(0)
    ang = np.arctan2(re[1] - le[1], re[0] - le[0])
    c, s = np.cos(-ang), np.sin(-ang)
    pts = pts @ np.array([[c, -s], [s, c]]).T
    lo, hi = pts.min(0), pts.max(0)
    return (pts - (lo + hi) / 2) / (hi[0] - lo[0])


def crop_template(size: int, margin: float) -> np.ndarray:
    """Template landmark positions in a ``size x size`` crop, ``(68, 2) float64``.

    The landmark box is centred horizontally and its width is ``size / (1 + 2*margin)``; it sits a
    little below centre so the forehead stays in view.
    """
    t = unit_template()
    scale = size / (1.0 + 2.0 * margin)
    centre = np.array([size / 2.0, size / 2.0 + 0.06 * size])
    return t * scale + centre


def crop_transform(landmarks: np.ndarray, size: int, margin: float) -> np.ndarray:
    """The ``(2, 3)`` similarity taking source-frame landmarks onto the crop template."""
    return estimate_similarity(landmarks, crop_template(size, margin))


def inter_ocular(points: np.ndarray) -> float:
    """Distance between the two eye centres of ``(68, 2)`` landmarks, in the points' units."""
    pts = np.asarray(points, dtype=np.float64)
    return float(np.linalg.norm(pts[LEFT_EYE].mean(0) - pts[RIGHT_EYE].mean(0)))
