"""Action-unit (AU) displacement fields, emotion -> AU sets, and the onset/apex/offset profile.

Each AU is a set of :class:`Anchor` s: a landmark (or the mean of a few landmarks), a motion
vector in face-local units and a Gaussian width. Vectors are ``(out, up)`` in units of the
inter-ocular distance (IOD): ``out`` points away from the face midline on the anchor's side, ``up``
points from chin to brows. A unilateral AU (``R12``) keeps only the anchors on that side. The clip's
*unit field* is the sum of its AU fields scaled so that a vector of length 1 moves ``amp_iod * IOD``
pixels; frame ``t`` is rendered with ``intensity(t) * unit_field``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mepipe.synth import landmarks as lm
from mepipe.synth.fields import AnchorField

AMPLITUDE_IOD = {"micro": 0.03, "macro": 0.1}
"""Pixels moved by a unit AU vector, as a fraction of the IOD (micro: ~3 px at IOD 100 px)."""

EXPRESSION_SETS: dict[str, tuple[float, float]] = {
    "canonical": (0.8, 1.2),
    "varied": (0.5, 1.3),
}
"""Expression sets -> range of the per-clip amplitude gain (uniform). ``canonical``: one or two fixed AU
combinations per class (each layout's ``classes``) at 0.8-1.2 x the amplitude. ``varied``: the
layout's ``varied_classes`` (several combinations per class, sharing AUs across classes, as real
coding sheets do) at 0.5-1.3 x, so that some clips are faint."""


@dataclass(frozen=True)
class Anchor:
    """One Gaussian bump of an AU.

    Attributes:
        points: landmark indices whose mean is the anchor (given for the R side or the midline).
        out, up: motion in IOD units (``out`` away from the midline, ``up`` towards the brows).
        sigma: Gaussian width in IOD units.
        side: ``"R"`` (mirrored automatically to ``"L"``) or ``"C"`` (midline; ``out`` must be 0).
    """

    points: tuple[int, ...]
    out: float
    up: float
    sigma: float
    side: str = "R"


def _a(points: int | tuple[int, ...], out: float, up: float, sigma: float, side: str = "R") -> Anchor:
    return Anchor(points if isinstance(points, tuple) else (points,), out, up, sigma, side)


AU_TABLE: dict[int, tuple[str, tuple[Anchor, ...]]] = {
    1: ("inner brow raiser", (_a(20, 0.0, 0.9, 0.2), _a(21, 0.1, 1.0, 0.2))),
    2: ("outer brow raiser", (_a(17, 0.0, 0.9, 0.2), _a(18, 0.0, 1.0, 0.2), _a(19, 0.0, 0.8, 0.2))),
    4: ("brow lowerer", (_a(19, 0.2, -0.6, 0.2), _a(20, -0.3, -0.7, 0.2), _a(21, -0.5, -0.7, 0.2))),
    5: ("upper lid raiser", (_a(37, 0.0, 0.7, 0.09), _a(38, 0.0, 0.7, 0.09))),
    6: ("cheek raiser", (_a((1, 31, 41), 0.1, 0.6, 0.25), _a(40, 0.0, 0.3, 0.09), _a(41, 0.0, 0.3, 0.09))),
    7: (
        "lid tightener",
        (_a(40, 0.0, 0.8, 0.09), _a(41, 0.0, 0.8, 0.09), _a(37, 0.0, -0.3, 0.07), _a(38, 0.0, -0.3, 0.07)),
    ),
    9: ("nose wrinkler", (_a(31, 0.1, 0.6, 0.15), _a((31, 39), 0.0, 0.5, 0.15), _a(21, 0.0, -0.3, 0.15))),
    10: ("upper lip raiser", (_a(49, 0.0, 0.6, 0.14), _a(50, 0.0, 0.7, 0.14), _a(51, 0.0, 0.7, 0.14, "C"))),
    12: ("lip corner puller", (_a(48, 0.5, 0.6, 0.2),)),
    14: ("dimpler", (_a(48, 0.5, 0.1, 0.15),)),
    15: ("lip corner depressor", (_a(48, 0.1, -0.7, 0.18),)),
    17: ("chin raiser", (_a(8, 0.0, 0.6, 0.25, "C"), _a(57, 0.0, 0.5, 0.15, "C"))),
    20: ("lip stretcher", (_a(48, 0.8, -0.15, 0.18),)),
    24: (
        "lip press",
        (
            _a(62, 0.0, -0.6, 0.12, "C"),
            _a(66, 0.0, 0.6, 0.12, "C"),
            _a(51, 0.0, -0.4, 0.14, "C"),
            _a(57, 0.0, 0.4, 0.14, "C"),
        ),
    ),
    26: ("jaw drop", (_a(8, 0.0, -0.9, 0.45, "C"), _a(57, 0.0, -0.7, 0.2, "C"), _a(6, 0.0, -0.6, 0.35))),
}
"""AU number -> (FACS name, anchors). Anchors name R-side (image-left) or midline landmarks."""


def lateralizable(au: int) -> bool:
    """True when the AU has no midline anchors, so a one-sided version (``R12``) is meaningful."""
    return all(a.side == "R" for a in AU_TABLE[au][1])


@dataclass(frozen=True)
class AUSpec:
    """One coded action unit: its number and laterality (``""`` both sides, ``"R"`` or ``"L"``)."""

    au: int
    side: str = ""

    def code(self) -> str:
        """FACS-style code as written in coding files: ``"12"``, ``"R12"``, ``"L14"``."""
        return f"{self.side}{self.au}"


def au_string(aus: Sequence[AUSpec]) -> str:
    """Join AU codes with ``+`` (``"6+R12"``); ``""`` for no AUs."""
    return "+".join(a.code() for a in aus)


def choose_aus(
    options: Sequence[tuple[int, ...]],
    rng: np.random.Generator,
    lateral_prob: float = 0.0,
    force_lateral: bool = False,
) -> tuple[AUSpec, ...]:
    """Pick one of the class's AU combinations and, with ``lateral_prob``, make it one-sided.

    One-sidedness applies to every lateralizable AU of the combination together (one side per clip).
    """
    combo = options[int(rng.integers(len(options)))] if len(options) > 1 else options[0]
    lateral = force_lateral or (lateral_prob > 0 and bool(rng.random() < lateral_prob))
    side = ("R", "L")[int(rng.integers(2))] if lateral else ""
    return tuple(AUSpec(au, side if lateralizable(au) else "") for au in combo)


def au_fields(aus: Sequence[AUSpec], points: np.ndarray, scale_px: float) -> list[AnchorField]:
    """Forward-motion fields of ``aus`` on a face with landmarks ``points`` ``(68, 2)``.

    Args:
        aus: the coded AUs.
        points: the neutral landmarks, pixels.
        scale_px: pixels moved by a unit vector (``AMPLITUDE_IOD[amplitude] * IOD`` times a jitter).

    Returns:
        One :class:`AnchorField` per AU (apex displacement, i.e. intensity 1).
    """
    pts = np.asarray(points, dtype=np.float64)
    iod = lm.interocular(pts)
    x_axis, y_axis = lm.face_axes(pts)
    up_dir = -y_axis
    fields = []
    for spec in aus:
        if spec.au not in AU_TABLE:
            raise ValueError(f"AU {spec.au} has no displacement model; known AUs: {sorted(AU_TABLE)}")
        centres, vectors, sigmas = [], [], []
        for anchor in AU_TABLE[spec.au][1]:
            sides = ["C"] if anchor.side == "C" else [s for s in ("R", "L") if spec.side in ("", s)]
            for side in sides:
                idx = list(anchor.points) if side != "L" else [lm.MIRROR[i] for i in anchor.points]
                out_dir = -x_axis if side == "R" else (x_axis if side == "L" else np.zeros(2))
                centres.append(pts[idx].mean(0))
                vectors.append(scale_px * (anchor.out * out_dir + anchor.up * up_dir))
                sigmas.append(anchor.sigma * iod)
        fields.append(AnchorField.build(centres, vectors, sigmas))
    return fields


def intensity_profile(frames: np.ndarray, onset: float, apex: float, offset: float) -> np.ndarray:
    """Raised-cosine expression intensity at the given frame numbers.

    0 at ``onset``, rising as ``(1 - cos(pi * (n - onset) / (apex - onset))) / 2`` to 1 at ``apex``,
    falling symmetrically to 0 at ``offset``, and 0 outside ``[onset, offset]``. Frame numbers use the
    same convention as the arguments (source frame numbers, or 0-based indices for videos).
    Example: onset 46, apex 70, offset 100 gives 0.5 at frame 58 and at frame 85.

    Returns:
        ``(T,)`` float64 in ``[0, 1]``.
    """
    n = np.asarray(frames, dtype=np.float64)
    out = np.zeros_like(n)
    rise = (n >= onset) & (n <= apex)
    fall = (n > apex) & (n <= offset)
    if apex > onset:
        out[rise] = 0.5 * (1.0 - np.cos(np.pi * (n[rise] - onset) / (apex - onset)))
    else:
        out[rise] = 1.0
    if offset > apex:
        out[fall] = 0.5 * (1.0 + np.cos(np.pi * (n[fall] - apex) / (offset - apex)))
    return out
