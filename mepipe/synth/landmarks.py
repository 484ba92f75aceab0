"""The 68-point (iBUG 300-W / dlib) landmark scheme: index groups, mirror map and face axes.

Index convention (dlib): 0-16 jaw, 17-21 and 22-26 brows, 27-35 nose, 36-41 and 42-47 eyes,
48-67 mouth. Points 0-7, 17-21, 36-41 and 48 lie on the *image-left* side of a frontal face, which is
the subject's right side; in this package that side is called ``"R"`` (as in FACS codes like ``R12``).
Landmark arrays are ``(68, 2)`` float64 ``(x, y)`` pixel coordinates.
"""

from __future__ import annotations

import numpy as np

N_POINTS = 68
JAW = tuple(range(0, 17))
BROW_R, BROW_L = tuple(range(17, 22)), tuple(range(22, 27))
NOSE = tuple(range(27, 36))
EYE_R, EYE_L = tuple(range(36, 42)), tuple(range(42, 48))
MOUTH = tuple(range(48, 68))


def _mirror_pairs() -> list[tuple[int, int]]:
    pairs = [(i, 16 - i) for i in range(8)]  # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]  # brows
    pairs += [(31, 35), (32, 34)]  # nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lips
    pairs += [(60, 64), (61, 63), (65, 67)]  # inner lips
    return pairs


def _mirror_map() -> tuple[int, ...]:
    perm = list(range(N_POINTS))
    for a, b in _mirror_pairs():
        perm[a], perm[b] = b, a
    return tuple(perm)


MIRROR: tuple[int, ...] = _mirror_map()
"""``MIRROR[i]`` is the point that takes the role of point ``i`` after a horizontal flip."""


def mirror_landmarks(points: np.ndarray, width: int) -> np.ndarray:
    """Landmarks of the horizontally flipped image (``image[:, ::-1]`` of width ``width``).

    Returns ``(68, 2)`` float64 with ``x' = width - 1 - x`` and the indices re-ordered by :data:`MIRROR`
    so that every index keeps its anatomical meaning.
    """
    pts = np.asarray(points, dtype=np.float64)[list(MIRROR)].copy()
    pts[:, 0] = width - 1 - pts[:, 0]
    return pts


def eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the image-left (R) and image-right (L) eyes, each ``(2,)`` float64."""
    pts = np.asarray(points, dtype=np.float64)
    return pts[list(EYE_R)].mean(0), pts[list(EYE_L)].mean(0)


def interocular(points: np.ndarray) -> float:
    """Distance between the two eye centres, in pixels."""
    r, lft = eye_centres(points)
    return float(np.linalg.norm(lft - r))


def face_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit face axes ``(x_axis, y_axis)`` in image coordinates.

    ``x_axis`` points from the R eye to the L eye (image right for an upright face); ``y_axis`` is
    ``x_axis`` rotated by +90 degrees, i.e. pointing down the face (towards the chin).
    """
    r, lft = eye_centres(points)
    x_axis = (lft - r) / max(float(np.linalg.norm(lft - r)), 1e-9)
    y_axis = np.array([-x_axis[1], x_axis[0]])
    return x_axis, y_axis


def face_centre(points: np.ndarray) -> np.ndarray:
    """Centre of the landmarks' bounding box, ``(2,)`` float64."""
    pts = np.asarray(points, dtype=np.float64)
    return (pts.min(0) + pts.max(0)) / 2.0


def bounding_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """``(left, top, right, bottom)`` of the landmarks, in pixels."""
    pts = np.asarray(points, dtype=np.float64)
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    return float(x0), float(y0), float(x1), float(y1)
