"""Rendering a clip: expression field x intensity, smooth head pose, illumination drift, sensor noise.

Per frame ``t`` the written image is::

    frame_t(x) = clip(gain_t * S(q - a_t * U(q)) + noise_t),   q = P_t^{-1}(x)

where ``S`` is the subject canvas (neutral), ``U`` the clip's unit expression field (canvas pixels),
``a_t`` the intensity profile, and ``P_t`` the head pose: the similarity transform
``P_t(q) = c + s_t * R(theta_t) (q - c) + (tx_t, ty_t)`` about the subject's face centre ``c``
(``theta`` positive = counter-clockwise as displayed, the ``cv2.getRotationMatrix2D`` convention).
The geometric part is one ``cv2.remap`` per frame. JPEG compression (if any) is applied by the
layout writer when it saves the frame.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from mepipe.synth.faces import Subject
from mepipe.synth.fields import AnchorField, grid, move_points

MOTION = {
    # start pose ranges (per clip) and drift amplitudes (within a clip)
    "micro": {"t0": 6.0, "r0": 3.0, "s0": 0.03, "dt": 1.5, "dr": 0.4, "ds": 0.004, "g0": 0.06, "dg": 0.01},
    "macro": {"t0": 12.0, "r0": 3.0, "s0": 0.03, "dt": 6.0, "dr": 3.0, "ds": 0.03, "g0": 0.08, "dg": 0.04},
}
"""Head-pose and gain ranges: ``t`` pixels, ``r`` degrees, ``s`` relative scale, ``g`` relative gain."""

_NOISE_LUT = np.array(
    [statistics.NormalDist().inv_cdf((k + 0.5) / 256.0) for k in range(256)], dtype=np.float32
)  # random byte -> standard normal quantile (a fast, deterministic Gaussian noise source)


@dataclass(frozen=True)
class Nuisance:
    """Per-frame head pose and photometric nuisances of one clip (all arrays ``(T,)`` float64).

    Attributes:
        tx, ty: head translation in pixels.
        rot_deg: in-plane head rotation in degrees (counter-clockwise as displayed).
        scale: head scale factor (1 = canvas size).
        gain: illumination gain multiplying the image.
        noise_sigma: sensor-noise standard deviation in grey levels.
        trajectory: the parameters the arrays were drawn from (start pose, drift amplitude,
            frequency and phase per component), for the ground-truth file.
    """

    tx: np.ndarray
    ty: np.ndarray
    rot_deg: np.ndarray
    scale: np.ndarray
    gain: np.ndarray
    noise_sigma: float
    trajectory: dict[str, Any]


def sample_nuisance(rng: np.random.Generator, n_frames: int, amplitude: str) -> Nuisance:
    """Draw a smooth head-pose / gain trajectory over ``n_frames`` frames.

    Each component is ``start + drift * (sin(2 pi f u + phi) - sin(phi))`` with ``u`` going 0 -> 1
    over the clip, ``f`` in 0.2..0.8 cycles per clip and a random phase, so it starts at ``start``.
    """
    m = MOTION[amplitude]
    u = np.linspace(0.0, 1.0, n_frames) if n_frames > 1 else np.zeros(1)
    traj: dict[str, Any] = {}
    comps = {}
    for name, start_range, drift_range, centre in (
        ("tx", m["t0"], m["dt"], 0.0),
        ("ty", m["t0"] * 0.6, m["dt"], 0.0),
        ("rot_deg", m["r0"], m["dr"], 0.0),
        ("scale", m["s0"], m["ds"], 1.0),
        ("gain", m["g0"], m["dg"], 1.0),
    ):
        start = centre + float(rng.uniform(-start_range, start_range))
        drift = float(rng.uniform(-drift_range, drift_range))
        freq = float(rng.uniform(0.2, 0.8))
        phase = float(rng.uniform(0.0, 2 * np.pi))
        comps[name] = start + drift * (np.sin(2 * np.pi * freq * u + phase) - np.sin(phase))
        traj[name] = {"start": start, "drift": drift, "freq_per_clip": freq, "phase": phase}
    sigma = float(rng.uniform(1.0, 2.5))
    return Nuisance(comps["tx"], comps["ty"], comps["rot_deg"], comps["scale"], comps["gain"], sigma, traj)


def pose_matrix(centre: np.ndarray, tx: float, ty: float, rot_deg: float, scale: float) -> np.ndarray:
    """``(2, 3)`` float64 forward head-pose transform canvas -> frame (see module docstring)."""
    mat = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(rot_deg), float(scale))
    mat[:, 2] += (tx, ty)
    return mat


class ClipRenderer:
    """Renders the frames of one clip.

    Args:
        subject: the subject canvas (neutral face, canonical pose).
        fields: the clip's expression fields at intensity 1 (forward motion, canvas pixels).
        intensity: ``(T,)`` expression intensity per written frame.
        nuisance: head pose, gain and noise per written frame.
        noise_rng: random stream for the sensor noise (consumed frame by frame, in order).
        grayscale: produce ``(H, W)`` uint8 frames instead of ``(H, W, 3)`` RGB.
        placement: optional ``(2, 3)`` similarity applied after the head pose (a hard-case condition:
            smaller, rotated or moved face; see :mod:`mepipe.synth.conditions`).
        backdrop: with ``placement``: ``(H, W, 3) uint8`` shown where the moved canvas leaves the frame
            (instead of a mirrored copy of the subject).

    Frames have the canvas size ``(H, W)`` of ``subject.image``.
    """

    def __init__(
        self,
        subject: Subject,
        fields: list[AnchorField],
        intensity: np.ndarray,
        nuisance: Nuisance,
        noise_rng: np.random.Generator,
        grayscale: bool = False,
        placement: np.ndarray | None = None,
        backdrop: np.ndarray | None = None,
    ) -> None:
        self.subject = subject
        self.placement = None if placement is None else np.asarray(placement, dtype=np.float64)
        self.backdrop = backdrop
        self.fields = fields
        self.intensity = np.asarray(intensity, dtype=np.float64)
        self.nuisance = nuisance
        self.noise_rng = noise_rng
        self.grayscale = grayscale
        height, width = subject.image.shape[:2]
        self._noise_lut = _NOISE_LUT * np.float32(nuisance.noise_sigma) + np.float32(
            0.5
        )  # +0.5: round on cast
        self.unit = grid(fields, width, height) if fields else None
        self._ones = np.ones((height, width), np.float32)
        self._gx, self._gy = np.meshgrid(
            np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
        )

    def __len__(self) -> int:
        return len(self.intensity)

    def pose(self, t: int) -> np.ndarray:
        """Forward head-pose matrix ``(2, 3)`` of frame ``t`` (0-based position in the clip)."""
        n = self.nuisance
        m = pose_matrix(self.subject.centre, n.tx[t], n.ty[t], n.rot_deg[t], n.scale[t])
        if self.placement is None:
            return m
        a = self.placement
        return np.hstack([a[:, :2] @ m[:, :2], (a[:, :2] @ m[:, 2] + a[:, 2])[:, None]])

    def landmarks(self, t: int) -> np.ndarray:
        """Exact 68 landmarks ``(68, 2)`` float64 of frame ``t`` in frame pixels (expression + pose)."""
        pts = move_points(self.fields, self.subject.landmarks, float(self.intensity[t]))
        return np.c_[pts, np.ones(len(pts))] @ self.pose(t).T

    def to_frame(self, t: int, points: np.ndarray) -> np.ndarray:
        """Map canvas points ``(N, 2)`` into frame ``t`` pixels by the head pose only."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return np.c_[pts, np.ones(len(pts))] @ self.pose(t).T

    def peak_displacement(self) -> float:
        """Largest expression displacement at intensity 1, in canvas pixels."""
        if self.unit is None:
            return 0.0
        return float(np.sqrt((self.unit.astype(np.float64) ** 2).sum(-1)).max())

    def frame(self, t: int) -> np.ndarray:
        """Render frame ``t``: ``(H, W, 3)`` uint8 RGB, or ``(H, W)`` uint8 when grayscale.

        Frames must be requested in order 0, 1, ... for the noise stream to be reproducible.
        """
        inv = cv2.invertAffineTransform(self.pose(t)).astype(np.float32)
        qx = inv[0, 0] * self._gx + inv[0, 1] * self._gy + inv[0, 2]
        qy = inv[1, 0] * self._gx + inv[1, 1] * self._gy + inv[1, 2]
        a = float(self.intensity[t])
        if self.unit is not None and a > 0.0:
            u = cv2.remap(self.unit, qx, qy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            qx = qx - np.float32(a) * u[..., 0]
            qy = qy - np.float32(a) * u[..., 1]
        if self.backdrop is None:
            img = cv2.remap(self.subject.image, qx, qy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        else:
            img = cv2.remap(self.subject.image, qx, qy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            inside = cv2.remap(self._ones, qx, qy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[
                ..., None
            ]
            img = (img * inside + self.backdrop * (1.0 - inside) + 0.5).astype(np.uint8)
        if self.grayscale:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        noise = self._noise_lut[np.frombuffer(self.noise_rng.bytes(img.size), dtype=np.uint8)].reshape(
            img.shape
        )
        out = img.astype(np.float32)
        out *= np.float32(self.nuisance.gain[t])
        out += noise
        np.clip(out, 0.0, 255.0, out=out)
        return out.astype(np.uint8)  # truncation of x + 0.5 == rounding

    def frames(self) -> Iterator[np.ndarray]:
        """All frames in order (see :meth:`frame`)."""
        for t in range(len(self)):
            yield self.frame(t)
