"""Do heat maps locate the action? Scores against the synthetic generator's ground truth.

Coordinates: pixels of the aligned crop (or of the model input, a pure resize of it), ``(x, y)`` with
pixel centres on integers, x right, y down (the convention of the ground truth and of
``cv2.warpAffine``). A crop of side ``S`` is the source frame warped by the shard's ``transform``
(source pixels -> crop pixels), so a ground-truth point ``q`` of the frame lands at ``M @ [q, 1]``.

**AU regions** (:func:`au_region_mask`): the union of discs around the clip's AU anchors
(``au_anchors_onset`` of ``synth_ground_truth.json``: the exact anchor positions in the true onset
frame, one per Gaussian bump of each AU of :data:`mepipe.synth.expressions.AU_TABLE`) mapped through
the transform of that frame. A disc's radius is ``max(radius_iod * IOD, σ)``: at least
:data:`REGION_RADIUS_IOD` (0.2) inter-ocular distances, or the bump's own Gaussian width ``σ`` where
that is larger (the jaw drop's 0.45 IOD); the IOD is measured between the eye centres (mean of
iBUG-68 points 36-41 and 42-47) of the true onset landmarks mapped into the crop.

**Scores** of a non-negative map (:func:`score_map`), upsampled bilinearly to the mask's grid and
normalised to sum 1:

* ``mass``: the share of the map's mass inside the regions; a uniform map scores ``chance_mass``,
  the regions' share of the area;
* ``hit`` (pointing game): the map's maximum lies within ``tolerance`` pixels of a region
  (:data:`POINTING_TOLERANCE`: half a heat-map cell, the map cannot point more precisely);
  ``chance_hit`` is the share of pixels within that tolerance (a maximum placed at random).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mepipe.face.geometry import apply_transform, inter_ocular

REGION_RADIUS_IOD = 0.2
"""Smallest region disc radius, in inter-ocular distances."""
POINTING_TOLERANCE = "half a heat-map cell"


def affine_scale(matrix: np.ndarray) -> float:
    """The isotropic scale of a ``(2, 3)`` (similarity) matrix: ``sqrt(|det A|)``."""
    m = np.asarray(matrix, dtype=np.float64).reshape(2, 3)
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def disc_mask(centres: np.ndarray, radii: np.ndarray, size: int) -> np.ndarray:
    """``(size, size) bool``: pixels whose centre lies within ``radii[k]`` of ``centres[k]`` for some k.

    Args:
        centres: ``(K, 2)`` ``(x, y)`` pixel coordinates (may lie outside the grid).
        radii: ``(K,)`` radii in pixels.
        size: grid side.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    mask = np.zeros((size, size), bool)
    for (cx, cy), r in zip(np.asarray(centres, np.float64).reshape(-1, 2), np.ravel(radii), strict=True):
        mask |= (xx - cx) ** 2 + (yy - cy) ** 2 <= float(r) ** 2
    return mask


def au_region_mask(
    clip_truth: Mapping[str, Any],
    transform: np.ndarray,
    size: int,
    *,
    scale: float = 1.0,
    radius_iod: float = REGION_RADIUS_IOD,
) -> tuple[np.ndarray, float]:
    """The AU regions of one ground-truth clip on the crop grid (see the module docstring).

    Args:
        clip_truth: the clip's entry of ``synth_ground_truth.json`` (``au_anchors_onset``,
            ``landmarks_onset``).
        transform: ``(2, 3)`` source -> crop matrix of the clip's true onset frame.
        size: side of the output grid (``S * scale``).
        scale: crop -> grid factor (``N / S`` for the model input of side N).
        radius_iod: smallest disc radius in IODs.

    Returns:
        ``(mask, iod)``: ``(size, size) bool`` and the IOD in grid pixels. The mask is empty for a clip
        without AUs.
    """
    m = np.asarray(transform, np.float64).reshape(2, 3) * scale
    iod = inter_ocular(apply_transform(m, np.asarray(clip_truth["landmarks_onset"])))
    anchors = clip_truth.get("au_anchors_onset") or []
    if not anchors:
        return np.zeros((size, size), bool), iod
    centres = apply_transform(m, np.array([[a["x"], a["y"]] for a in anchors]))
    sigmas = np.array([a["sigma_px"] for a in anchors], np.float64) * affine_scale(m)
    return disc_mask(centres, np.maximum(radius_iod * iod, sigmas), size), iod


def to_distribution(heat: np.ndarray, size: int) -> np.ndarray:
    """A ``(h, w)`` map -> ``(size, size) float64`` upsampled bilinearly (cell centres at
    ``(i + 0.5) * size / h``), negatives clipped, normalised to sum 1 (a map of zeros becomes uniform)."""
    import cv2

    h = np.asarray(heat, dtype=np.float32)
    if h.ndim != 2:
        raise ValueError(f"a heat map is (h, w), got shape {h.shape}")
    up = cv2.resize(h, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    up = np.clip(up, 0.0, None)
    total = up.sum()
    return up / total if total > 0 else np.full((size, size), 1.0 / (size * size))


def distance_to_mask(mask: np.ndarray) -> np.ndarray:
    """``(S, S) float32``: each pixel's Euclidean distance in pixels to the nearest mask pixel (0 inside;
    ``inf`` everywhere when the mask is empty)."""
    import cv2

    if not mask.any():
        return np.full(mask.shape, np.inf, np.float32)
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def score_map(heat: np.ndarray, mask: np.ndarray, tolerance: float) -> dict[str, float]:
    """Localisation scores of one map against one region mask.

    Args:
        heat: ``(h, w)`` non-negative map (a heat map at the model's resolution, or an image-size map).
        mask: ``(S, S) bool`` AU regions on the grid the map is upsampled to.
        tolerance: pointing-game tolerance in grid pixels.

    Returns:
        ``mass`` (share of the normalised map inside the mask), ``hit`` (1.0 when the maximum lies
        within ``tolerance`` of the mask, else 0.0), ``chance_mass`` (mask area share), ``chance_hit``
        (share of pixels within ``tolerance``).
    """
    size = mask.shape[0]
    if mask.shape != (size, size):
        raise ValueError(f"mask must be square, got {mask.shape}")
    p = to_distribution(heat, size)
    dist = distance_to_mask(mask)
    y, x = np.unravel_index(int(np.argmax(p)), p.shape)
    return {
        "mass": float(p[mask].sum()),
        "hit": float(dist[y, x] <= tolerance),
        "chance_mass": float(mask.mean()),
        "chance_hit": float((dist <= tolerance).mean()),
    }


def difference_map(onset: np.ndarray, apex: np.ndarray) -> np.ndarray:
    """``|apex − onset|`` averaged over colour channels: ``(S, S, 3) uint8`` pair -> ``(S, S) float64``."""
    a = np.asarray(onset, dtype=np.float64)
    b = np.asarray(apex, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"onset {a.shape} and apex {b.shape} differ in shape")
    d = np.abs(b - a)
    return d.mean(axis=-1) if d.ndim == 3 else d


def onset_transform(transform: np.ndarray, frame_numbers: Sequence[int], onset_frame: int) -> np.ndarray:
    """The ``(2, 3)`` source -> crop matrix of source frame ``onset_frame``.

    Args:
        transform: the shard's ``transform``, ``(2, 3)`` (one per clip) or ``(T, 2, 3)`` (per frame).
        frame_numbers: ``(T,)`` source frame numbers of the stored frames.
        onset_frame: the true onset's source frame number.

    Raises:
        ValueError: a per-frame transform and a frame that is not stored.
    """
    t = np.asarray(transform, dtype=np.float64)
    if t.ndim == 2:
        return t
    where = np.nonzero(np.asarray(frame_numbers) == onset_frame)[0]
    if not len(where):
        raise ValueError(f"source frame {onset_frame} is not among the clip's stored frames")
    return t[int(where[0])]
