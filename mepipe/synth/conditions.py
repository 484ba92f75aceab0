"""Hard cases for the face stage: per-clip conditions applied while a synthetic clip is rendered.

``synthesize(..., conditions=("distractor_pattern", "late", ...))`` gives clip ``i`` the condition
``conditions[i % len(conditions)]`` (``"none"`` leaves a clip as it is). Each condition is a
*placement* (a similarity applied after the head pose: the face made smaller, rotated, moved) and/or a
*post-process* of every rendered frame (a static distractor pasted in, grey, dark, blur, frames without
the face). The ground truth records it per clip (``condition``: name, parameters, ``face_frames`` = the
first and last frame numbers that show the subject's face, ``distractor_box`` in frame pixels).

Conditions (what a real recording does, and what the face stage must do with it):

* ``distractor_pattern``: a poster/badge with a face-like drawing, larger than the (smaller) face, at
  the side of the frame: the subject's face must be chosen.
* ``distractor_photo``: a printed photograph of another face, larger than the subject's: both are real
  faces; the choice is flagged ``several_faces``.
* ``small``: the face at ~30-40 % of its size (a far camera).
* ``rotated``: in-plane head rotation of 20-30 degrees, either way.
* ``grey``, ``dark`` (gain 0.2-0.3, more sensor noise), ``blur`` (defocus, sigma 2-3 px).
* ``partial``: the face 25-35 % out of the frame (left, right or bottom edge).
* ``late``: the first 30-50 % of the frames show the empty scene (the person is not there yet).
* ``leave``: the last 30-50 % show the empty scene.
* ``cut``: the last 30-50 % show another scene (a hard cut, no face).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

CONDITIONS = (
    "none",
    "distractor_pattern",
    "distractor_photo",
    "small",
    "rotated",
    "grey",
    "dark",
    "blur",
    "partial",
    "late",
    "leave",
    "cut",
)


@dataclass
class Condition:
    """One clip's condition, drawn by :func:`make_condition`.

    Attributes:
        name: a name in :data:`CONDITIONS`.
        params: the drawn parameters (JSON-able, for the ground truth).
        placement: ``(2, 3)`` similarity applied after the head pose (identity for most conditions).
        face_span: ``(first, last)`` 0-based positions in the clip that show the face.
        distractor: ``(x, y, image)``: a static ``(h, w, 3)`` picture pasted at ``(x, y)``, or ``None``.
        empty: ``(H, W, 3) uint8`` the picture shown instead of the face outside ``face_span``.
        backdrop: ``(H, W, 3) uint8`` the scene around a moved (smaller, rotated, shifted) face.
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    placement: np.ndarray = field(default_factory=lambda: np.array([[1.0, 0, 0], [0, 1.0, 0]]))
    face_span: tuple[int, int] = (0, 0)
    distractor: tuple[int, int, np.ndarray] | None = None
    empty: np.ndarray | None = None
    backdrop: np.ndarray | None = None

    def apply(self, t: int, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Post-process rendered frame ``t`` (``(H, W, 3)`` or ``(H, W)`` uint8); returns a new array."""
        out = img.copy()
        if self.empty is not None and not self.face_span[0] <= t <= self.face_span[1]:
            e = self.empty if out.ndim == 3 else cv2.cvtColor(self.empty, cv2.COLOR_RGB2GRAY)
            noise = rng.normal(0.0, 1.5, e.shape)
            out = np.clip(e.astype(np.float64) + noise, 0, 255).astype(np.uint8)
        if self.distractor is not None:
            x, y, pic = self.distractor
            p = pic if out.ndim == 3 else cv2.cvtColor(pic, cv2.COLOR_RGB2GRAY)
            h, w = p.shape[:2]
            noisy = np.clip(p.astype(np.float64) + rng.normal(0.0, 1.5, p.shape), 0, 255).astype(np.uint8)
            out[y : y + h, x : x + w] = noisy
        if self.name == "grey" and out.ndim == 3:
            out = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        elif self.name == "dark":
            dark = out.astype(np.float64) * self.params["gain"] + rng.normal(0.0, 3.0, out.shape)
            out = np.clip(dark, 0, 255).astype(np.uint8)
        elif self.name == "blur":
            out = cv2.GaussianBlur(out, (0, 0), self.params["sigma"])
        return out

    def truth(self, numbers: list[int]) -> dict[str, Any]:
        """The ground-truth record (frame numbers of the face span, the distractor box)."""
        doc: dict[str, Any] = {
            "name": self.name,
            "params": self.params,
            "face_frames": [numbers[self.face_span[0]], numbers[self.face_span[1]]],
        }
        if self.distractor is not None:
            x, y, pic = self.distractor
            doc["distractor_box"] = [x, y, x + pic.shape[1], y + pic.shape[0]]
        return doc


def _about(
    centre: np.ndarray, angle: float, scale: float, shift: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle), float(scale))
    m[:, 2] += shift
    return m


def face_like_pattern(size: int, rng: np.random.Generator) -> np.ndarray:
    """``(size, size, 3) uint8``: a poster with a drawn face (oval, brows, eyes, nose, mouth) on a board."""
    board = tuple(int(v) for v in rng.integers(150, 230, 3))
    img = np.full((size, size, 3), board, np.uint8)
    c, r = size // 2, int(size * 0.42)
    skin = tuple(int(v) for v in rng.integers(120, 210, 3))
    cv2.ellipse(img, (c, c), (int(r * 0.78), r), 0, 0, 360, skin, -1, cv2.LINE_AA)
    dark = (40, 35, 30)
    th = max(2, size // 45)
    for dx in (-1, 1):
        ex = c + dx * int(r * 0.34)
        cv2.ellipse(
            img, (ex, c - int(r * 0.18)), (int(r * 0.14), int(r * 0.07)), 0, 0, 360, dark, -1, cv2.LINE_AA
        )
        cv2.line(
            img, (ex - int(r * 0.17), c - int(r * 0.38)), (ex + int(r * 0.17), c - int(r * 0.40)), dark, th
        )
    cv2.line(img, (c, c - int(r * 0.1)), (c - int(r * 0.06), c + int(r * 0.22)), (90, 70, 60), th)
    cv2.ellipse(img, (c, c + int(r * 0.48)), (int(r * 0.26), int(r * 0.08)), 0, 0, 360, (130, 50, 50), -1)
    return cv2.GaussianBlur(img, (0, 0), 0.8)


def printed_photo(
    photo: np.ndarray, landmarks: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    """``(size, size, 3) uint8``: a printed, flatter copy of a face photograph (mirrored, recoloured)."""
    lo, hi = landmarks.min(0), landmarks.max(0)
    c, half = (lo + hi) / 2, 0.62 * float((hi - lo).max())
    h, w = photo.shape[:2]
    x0, y0 = int(max(0, c[0] - half)), int(max(0, c[1] - half))
    x1, y1 = int(min(w, c[0] + half)), int(min(h, c[1] + half))
    pic = cv2.resize(photo[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_AREA)[:, ::-1]
    tint = rng.uniform(0.8, 1.1, 3)
    flat = 60.0 + 0.65 * pic.astype(np.float64) * tint
    return np.clip(flat, 0, 255).astype(np.uint8)


def empty_scene(canvas: tuple[int, int], rng: np.random.Generator, textured: bool) -> np.ndarray:
    """``(H, W, 3) uint8`` a scene without a face: a lit wall gradient, or (``textured``) another scene."""
    w, h = canvas
    grey = float(rng.uniform(90, 200))
    ramp = np.linspace(1.0, 0.75, h)[:, None, None] * rng.uniform(0.9, 1.1, 3)[None, None, :]
    img = np.broadcast_to(grey * ramp, (h, w, 3)).copy()
    if textured:
        blobs = cv2.resize(rng.uniform(-60, 60, (6, 8, 3)), (w, h), interpolation=cv2.INTER_CUBIC)
        img += blobs + cv2.GaussianBlur(rng.normal(0, 25, (h, w, 3)), (0, 0), 3.0)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_condition(
    name: str,
    rng: np.random.Generator,
    n_frames: int,
    canvas: tuple[int, int],
    face_centre: np.ndarray,
    jaw_width: float,
    base_photo: tuple[np.ndarray, np.ndarray] | None = None,
) -> Condition:
    """Draw condition ``name`` for a clip of ``n_frames`` frames on a ``canvas = (W, H)`` frame.

    Args:
        face_centre: ``(2,)`` the subject's face centre on the canvas; ``jaw_width`` its jaw width, px.
        base_photo: ``(image, landmarks)`` of a real photograph (``distractor_photo``).
    """
    if name not in CONDITIONS:
        raise ValueError(f"unknown synthetic condition {name!r}; known: {', '.join(CONDITIONS)}")
    w, h = canvas
    span = (0, n_frames - 1)
    cond = Condition(name, face_span=span)
    if name in ("distractor_pattern", "distractor_photo", "small", "rotated", "partial"):
        cond.backdrop = empty_scene(canvas, rng, textured=False)
    if name.startswith("distractor"):
        scale = float(rng.uniform(0.62, 0.72))
        side = 1 if rng.random() < 0.5 else -1
        target = np.array([w * (0.5 + side * 0.23), h * 0.5])
        cond.placement = _about(face_centre, 0.0, scale, tuple(target - face_centre))
        size = int(min(h * 0.62, jaw_width * scale * float(rng.uniform(1.7, 2.0))))
        x = int(w * 0.5 - side * 0.24 * w - size / 2)
        y = int(h * 0.45 - size / 2)
        if name == "distractor_pattern":
            pic = face_like_pattern(size, rng)
        else:
            if base_photo is None:
                raise ValueError("distractor_photo needs a base photograph")
            pic = printed_photo(base_photo[0], base_photo[1], size, rng)
        cond.distractor = (max(0, x), max(0, y), pic)
        cond.params = {
            "face_scale": round(scale, 4),
            "distractor_px": size,
            "face_side": "right" if side > 0 else "left",
        }
    elif name == "small":
        scale = float(rng.uniform(0.3, 0.4))
        cond.placement = _about(face_centre, 0.0, scale)
        cond.params = {"face_scale": round(scale, 4)}
    elif name == "rotated":
        angle = float(rng.uniform(20.0, 30.0)) * (1 if rng.random() < 0.5 else -1)
        cond.placement = _about(face_centre, angle, 1.0)
        cond.params = {"angle_deg": round(angle, 3)}
    elif name == "partial":
        edge = str(rng.choice(["left", "right", "bottom"]))
        frac = float(rng.uniform(0.25, 0.35))
        half = 0.5 * jaw_width
        dx = {
            "left": -(face_centre[0] - half + frac * jaw_width),
            "right": w - face_centre[0] - half + frac * jaw_width,
        }
        dy = h - face_centre[1] - 0.55 * jaw_width + frac * 1.1 * jaw_width
        shift = (dx.get(edge, 0.0), dy if edge == "bottom" else 0.0)
        cond.placement = _about(face_centre, 0.0, 1.0, shift)
        cond.params = {"edge": edge, "fraction_out": round(frac, 3)}
    elif name == "dark":
        cond.params = {"gain": round(float(rng.uniform(0.2, 0.3)), 4)}
    elif name == "blur":
        cond.params = {"sigma": round(float(rng.uniform(2.0, 3.0)), 3)}
    elif name in ("late", "leave", "cut"):
        k = int(round(float(rng.uniform(0.3, 0.5)) * n_frames))
        k = min(max(k, 1), n_frames - 2)
        cond.face_span = (k, n_frames - 1) if name == "late" else (0, n_frames - 1 - k)
        cond.empty = empty_scene(canvas, rng, textured=name == "cut")
        cond.params = {"frames_without_face": k}
    return cond
