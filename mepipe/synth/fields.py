"""Smooth displacement fields built from Gaussian bumps placed at face landmarks.

Both the per-subject face morph and the action-unit (AU) expression fields are instances of
:class:`AnchorField`. A field is a *forward motion*: the image content at point ``s`` is moved to
``s + F(s)`` (approximately; see :func:`move_points` for the exact position). Images are resampled
backwards, i.e. output pixel ``p`` reads the input at ``p - F(p)``, which is what
:func:`grid` + ``cv2.remap`` implement.

Coordinates are pixel coordinates ``(x, y)`` with pixel centres on integers, x to the right and
y downwards (the OpenCV / dlib convention).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_SATURATION = 3.0  # weight w -> (1 - exp(-3 w)) keeps an isolated anchor at 95 % of its vector
_ROI_SIGMAS = 4.0  # the field is treated as zero farther than this many sigmas from every anchor


@dataclass(frozen=True)
class AnchorField:
    """A normalised sum of isotropic Gaussians, each carrying one motion vector.

    ``F(p) = (sum_k g_k(p) v_k / w(p)) * (1 - exp(-3 w(p)))`` with ``g_k(p) = exp(-|p - c_k|^2 / 2 s_k^2)``
    and ``w = sum_k g_k``. Near a cluster of anchors the field is the weighted mean of their vectors
    (overlapping anchors do not add up); far away it decays like a Gaussian.

    Attributes:
        centers: ``(K, 2)`` float64 anchor positions in pixels.
        vectors: ``(K, 2)`` float64 motion vectors in pixels.
        sigmas: ``(K,)`` float64 Gaussian widths in pixels.
    """

    centers: np.ndarray
    vectors: np.ndarray
    sigmas: np.ndarray

    @classmethod
    def build(
        cls, centers: Sequence[Sequence[float]], vectors: Sequence[Sequence[float]], sigmas: Sequence[float]
    ) -> AnchorField:
        c = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
        v = np.asarray(vectors, dtype=np.float64).reshape(-1, 2)
        s = np.asarray(sigmas, dtype=np.float64).reshape(-1)
        if not (len(c) == len(v) == len(s)) or np.any(s <= 0):
            raise ValueError(
                f"anchor arrays disagree or sigma <= 0: {len(c)} centers, {len(v)} vectors, {len(s)} sigmas"
            )
        return cls(c, v, s)

    def at(self, points: np.ndarray) -> np.ndarray:
        """Evaluate the field at ``points`` (``(N, 2)`` float, pixels); returns ``(N, 2)`` float64 pixels."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if len(self.centers) == 0:
            return np.zeros_like(pts)
        d2 = ((pts[:, None, :] - self.centers[None, :, :]) ** 2).sum(-1)
        g = np.exp(-d2 / (2.0 * self.sigmas[None, :] ** 2))
        w = g.sum(1, keepdims=True)
        mean = (g @ self.vectors) / np.maximum(w, 1e-12)
        return mean * (1.0 - np.exp(-_SATURATION * w))

    def roi(self, width: int, height: int) -> tuple[int, int, int, int] | None:
        """Pixel box ``(x0, y0, x1, y1)`` (end-exclusive) outside which the field is ~0; None if empty."""
        if len(self.centers) == 0:
            return None
        lo = (self.centers - _ROI_SIGMAS * self.sigmas[:, None]).min(0)
        hi = (self.centers + _ROI_SIGMAS * self.sigmas[:, None]).max(0)
        x0, y0 = max(0, int(np.floor(lo[0]))), max(0, int(np.floor(lo[1])))
        x1, y1 = min(width, int(np.ceil(hi[0])) + 1), min(height, int(np.ceil(hi[1])) + 1)
        if x1 <= x0 or y1 <= y0:
            return None
        return x0, y0, x1, y1


def field_at(fields: Sequence[AnchorField], points: np.ndarray) -> np.ndarray:
    """Sum of several fields at ``points`` (``(N, 2)``); returns ``(N, 2)`` float64 pixels."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    total = np.zeros_like(pts)
    for f in fields:
        total += f.at(pts)
    return total


def grid(fields: Sequence[AnchorField], width: int, height: int) -> np.ndarray:
    """Rasterise the sum of ``fields`` on the pixel grid.

    Returns:
        ``(height, width, 2)`` float32 array; ``[..., 0]`` is the x component, ``[..., 1]`` the y
        component, in pixels. Only each field's region of influence is evaluated.
    """
    out = np.zeros((height, width, 2), dtype=np.float32)
    for f in fields:
        box = f.roi(width, height)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        xs = np.arange(x0, x1, dtype=np.float64)
        rows_per_block = max(1, 65536 // len(xs))  # bound the (N, K) temporary
        for r0 in range(y0, y1, rows_per_block):
            r1 = min(y1, r0 + rows_per_block)
            gx, gy = np.meshgrid(xs, np.arange(r0, r1, dtype=np.float64))
            vals = f.at(np.stack([gx.ravel(), gy.ravel()], axis=1))
            out[r0:r1, x0:x1] += vals.reshape(r1 - r0, x1 - x0, 2).astype(np.float32)
    return out


def move_points(
    fields: Sequence[AnchorField], points: np.ndarray, scale: float = 1.0, iters: int = 12
) -> np.ndarray:
    """Where content at ``points`` ends up under the backward warp ``p -> p - scale * F(p)``.

    Solves ``p - scale * F(p) = s`` for each source point ``s`` by fixed-point iteration
    ``p <- s + scale * F(p)`` (a contraction for the smooth, small fields used here).

    Args:
        fields: the forward-motion fields.
        points: ``(N, 2)`` source positions in pixels.
        scale: intensity multiplying the fields (0 returns ``points`` unchanged).
        iters: number of iterations (12 gives < 1e-4 px for fields with |dF/dp| < 0.3).

    Returns:
        ``(N, 2)`` float64 positions in the warped image.
    """
    src = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if scale == 0.0 or not fields:
        return src.copy()
    p = src.copy()
    for _ in range(iters):
        p = src + scale * field_at(fields, p)
    return p
