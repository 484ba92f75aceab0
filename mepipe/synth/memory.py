"""Synthetic clips rendered in memory, with per-frame ground truth, and a frame source over them.

For benchmarks and tests of the face stage that need the truth at *every* frame (the written datasets'
ground truth keeps the onset and apex landmarks only): :func:`render_clip` returns the frames, the exact
landmarks with the expression (``landmarks``) and without it (``neutral``: the head pose alone) for every
frame; :func:`on_static_background` puts a clip's head in front of a wall that does not move;
:class:`ArrayFrameSource` serves frames to :func:`mepipe.face.stage.align_clip`;
:func:`stabilisation_scores` measures an alignment of a rendered clip against that truth.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mepipe.sources import FrameSource
from mepipe.synth.expressions import AMPLITUDE_IOD, AUSpec, au_fields, intensity_profile
from mepipe.synth.faces import load_base_faces, make_subject, sample_subject_params
from mepipe.synth.render import MOTION, ClipRenderer, Nuisance, sample_nuisance


@dataclass(frozen=True)
class RenderedClip:
    """Frames ``(H, W, 3) uint8 RGB`` and truth ``(T, 68, 2)`` float64 frame pixels; ``intensity`` ``(T,)``;
    ``onset``, ``apex`` positions; ``iod`` the subject's inter-ocular distance on the canvas (px)."""

    frames: list[np.ndarray]
    landmarks: np.ndarray
    neutral: np.ndarray
    intensity: np.ndarray
    onset: int
    apex: int
    iod: float


def render_clip(
    seed: int,
    n_frames: int = 60,
    *,
    aus: tuple[int, ...] = (6, 12),
    amplitude: str = "micro",
    motion: str = "micro",
    drift_gain: float = 1.0,
    canvas: tuple[int, int] = (640, 480),
) -> RenderedClip:
    """Render one clip: onset at frame 0, apex at 40 % of the clip, offset at the end.

    Args:
        seed: every random choice (subject appearance, AU scale, head trajectory, noise).
        aus: the action units of the expression (:data:`mepipe.synth.expressions.AU_TABLE`).
        amplitude: expression amplitude, ``micro`` (3 % IOD per unit AU vector) or ``macro``.
        motion: head-motion ranges, ``micro`` (nearly still) or ``macro`` (:data:`MOTION`).
        drift_gain: multiplies the within-clip head drift (translation, rotation, scale).
    """
    rng = np.random.default_rng([seed, 21])
    base = load_base_faces(None)[0]
    subject = make_subject(base, sample_subject_params(rng, 1, 0), canvas, (190.0, 240.0))
    scale_px = AMPLITUDE_IOD[amplitude] * subject.iod * float(rng.uniform(0.9, 1.1))
    fields = au_fields(tuple(AUSpec(a, "") for a in aus), subject.landmarks, scale_px)
    onset, apex = 0, int(round(0.4 * (n_frames - 1)))
    intensity = intensity_profile(np.arange(n_frames), onset, apex, n_frames - 1)
    nz = sample_nuisance(rng, n_frames, motion)
    if drift_gain != 1.0:
        start = {k: nz.trajectory[k]["start"] for k in ("tx", "ty", "rot_deg", "scale")}
        nz = Nuisance(
            *(start[k] + drift_gain * (getattr(nz, k) - start[k]) for k in ("tx", "ty", "rot_deg", "scale")),
            nz.gain,
            nz.noise_sigma,
            nz.trajectory,
        )
    r = ClipRenderer(subject, fields, intensity, nz, rng)
    frames = [r.frame(t) for t in range(n_frames)]
    lm = np.stack([r.landmarks(t) for t in range(n_frames)])
    neutral = np.stack([r.to_frame(t, subject.landmarks) for t in range(n_frames)])
    return RenderedClip(frames, lm, neutral, intensity, onset, apex, subject.iod)


def on_static_background(clip: RenderedClip, seed: int, pad: float = 0.15) -> RenderedClip:
    """``clip`` with everything but the head replaced by a static textured scene, as a head moving in
    front of a wall looks (in :func:`render_clip` the photograph's own background moves with the head).

    The head region of frame t is the hull of its true landmarks and a forehead of 0.6 IOD, dilated by
    ``pad`` IOD and feathered; the scene (:func:`mepipe.synth.conditions.empty_scene`) does not move.
    """
    import cv2

    from mepipe.face.geometry import inter_ocular
    from mepipe.synth.conditions import empty_scene

    h, w = clip.frames[0].shape[:2]
    scene = empty_scene((w, h), np.random.default_rng([seed, 22]), textured=True).astype(np.float32)
    out = []
    for frame, pts in zip(clip.frames, clip.landmarks, strict=True):
        iod = inter_ocular(pts)
        top = pts[17:27] - [0.0, 0.6 * iod]
        mask = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(np.vstack([pts, top])).astype(np.int32)), 255)
        k = 2 * int(round(pad * iod)) + 1
        mask = cv2.GaussianBlur(cv2.dilate(mask, np.ones((k, k), np.uint8)), (9, 9), 0)
        a = mask.astype(np.float32)[..., None] / 255.0
        out.append((frame * a + scene * (1.0 - a) + 0.5).astype(np.uint8))
    return replace(clip, frames=out)


def stabilisation_scores(clip: RenderedClip, result) -> tuple[np.ndarray, float]:
    """Both sides of stabilising ``clip``, from the transforms ``align_clip`` stored (``result``: its
    ``AlignResult``).

    Returns:
        ``(motion, retained)``. ``motion`` ``(n_kept,)``: residual head motion of each kept frame, the
        expression-free landmarks of frame t (head pose alone) through frame t's transform against the
        reference frame's, median over the 68 points, % of the crop's inter-ocular distance.
        ``retained``: the apex - onset landmark displacement seen in the crops projected on the true
        one (the apex expression with the head motion removed exactly), over the points the action
        moves (> 30 % of the largest move); 1.0 = the action intact, above 1 = head motion added.
    """
    from mepipe.face.geometry import apply_transform, estimate_similarity, inter_ocular

    def m(t: int) -> np.ndarray:
        tr = result.transforms
        return tr if tr.ndim == 2 else tr[t - result.first]

    ref = result.ref_pos
    ref_pts = apply_transform(m(ref), clip.neutral[ref])
    iod = inter_ocular(ref_pts)
    kept = range(result.first, result.first + result.n_kept)
    moved = [np.linalg.norm(apply_transform(m(t), clip.neutral[t]) - ref_pts, axis=1) for t in kept]
    motion = 100 * np.median(np.array(moved), axis=1) / iod
    a = clip.apex
    seen = apply_transform(m(a), clip.landmarks[a]) - apply_transform(m(ref), clip.landmarks[ref])
    ideal = estimate_similarity(clip.neutral[a], apply_transform(m(ref), clip.neutral[ref]))
    true = apply_transform(ideal, clip.landmarks[a]) - apply_transform(ideal, clip.neutral[a])
    size = np.linalg.norm(true, axis=1)
    sel = size > 0.3 * size.max()
    return motion, float((seen[sel] * true[sel]).sum() / (true[sel] ** 2).sum())


class ArrayFrameSource(FrameSource):
    """A :class:`~mepipe.sources.FrameSource` over frames in memory (``random_access`` as asked)."""

    def __init__(self, frames: list[np.ndarray], fps: float = 200.0, random_access: bool = True) -> None:
        self.frames = frames
        self.frame_numbers = list(range(len(frames)))
        self.fps = fps
        self.notes = []
        self.random_access = random_access  # type: ignore[misc]

    def read(self, i: int) -> np.ndarray:
        return self.frames[i]


__all__ = [
    "MOTION",
    "ArrayFrameSource",
    "RenderedClip",
    "on_static_background",
    "render_clip",
    "stabilisation_scores",
]
