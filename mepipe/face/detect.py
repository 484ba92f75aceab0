"""Finding *the* face on a frame: candidates from the detector, each landmarked and judged, the best kept.

For every detector box (best detector score first, at most ``face.max_candidates``):

1. the landmarker fits 68 points in the box;
2. **fit error**: RMS residual of the points after the best similarity onto the canonical template
   (% IOD, :func:`mepipe.face.fit.fit_error`);
3. **referee score**: the frame is warped with the similarity that takes the points onto the template
   into a 160 x 160 canonical crop (face ~100 px, eyes level), and dlib's HOG detector is run on that
   crop; the score is its best window near the template face box (centre within half a face width, size
   0.6-1.6x). A real face, whatever its size, roll and position in the frame, becomes a canonical frontal
   face there and scores high; a logo, a pattern or a wall that fooled the detector or gave a
   face-shaped landmark set does not.

A candidate is **plausible** when ``fit error <= face.max_fit_error`` and ``referee score >=
face.plausible_score``. Among the plausible candidates the one with the highest referee score is chosen
(ties within 0.05: the lower fit error). Box size never enters the choice, and the referee score is on
one scale for every detector backend (each backend's own scores are not comparable: dlib margins are
unbounded, YuNet's are 0..1), so the rule is the same whichever detector proposed the boxes.

Where the default thresholds come from (``benchmarks/face_plausibility.py`` prints the distributions;
real photographs: the bundled astronaut, insightface 2.1's ``t1.jpg`` (6 faces) and
``Tom_Hanks_54745.png``; hard synthetic cases: rotation up to 30°, dark, grey, blur, small, partly out of
frame; non-faces: detector false hits on photographs and textures, blank and textured regions):

* ``plausible_score = 0.3``: the lowest referee score of a real face was 0.41 (blur sigma 3 px), false hits
  scored at most 0.24 and regions without a face produced no window at all.
* ``max_fit_error = 40`` % IOD: real faces reached 27 % (turned heads, open mouths in ``t1.jpg``);
  with dlib-68 a non-face is *not* caught by this measure (a blank wall fits at ~9 %), so it only
  rejects shapes that are no face at all (a landmarker such as FAN can produce them).

When no candidate is plausible the clip fails with ``implausible_face`` naming the frames tried.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from mepipe.config import FaceConfig
from mepipe.face.backends import Box, FaceDetector, Landmarker, get_detector
from mepipe.face.fit import fit_error, template_box
from mepipe.face.geometry import crop_transform

REFEREE_SIZE = 160
REFEREE_MARGIN = 0.3
NO_WINDOW = -9.0
"""Referee score when the HOG detector finds no window near the template face box."""


class FaceIssue(Exception):
    """No usable face; ``reason`` is the manifest reason code (``no_face``, ``implausible_face``,
    ``face_too_small``, ``several_faces``, ``face_lost``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Candidate:
    """One detector box, landmarked and judged. ``landmarks`` ``(68, 2) float32`` in frame pixels."""

    box: Box
    landmarks: np.ndarray
    fit_error: float
    referee: float
    plausible: bool


@dataclass(frozen=True)
class FaceFit:
    """The face chosen on one frame.

    Attributes:
        box: the detector box (frame pixels), ``box.score`` the detector's confidence.
        landmarks: ``(68, 2) float32`` in frame pixels.
        faces_found: plausible faces on the frame (the chosen one included).
        note: what was chosen and why (empty when one box was found and taken).
        fit_error: % IOD (see :mod:`mepipe.face.detect`); referee: score on the canonical crop.
        candidates: every candidate judged (for audits and tests).
    """

    box: Box
    landmarks: np.ndarray
    faces_found: int
    note: str = ""
    fit_error: float = 0.0
    referee: float = 0.0
    candidates: tuple[Candidate, ...] = field(default=(), repr=False)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3) uint8 RGB`` -> ``(H, W) uint8`` (a grey frame is returned as is)."""
    return rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _referee_detector() -> FaceDetector:
    return get_detector("dlib-hog", 0, {"threshold": -1.0})


def referee_on_crop(gray_crop: np.ndarray, margin: float) -> float:
    """Referee score of an aligned ``(S, S) uint8`` crop of ``margin`` (any S): HOG on the crop resized so
    the template face box is ~100 px, best window near that box (:data:`NO_WINDOW` when none)."""
    s = gray_crop.shape[0]
    want = template_box(REFEREE_SIZE, REFEREE_MARGIN).width
    f = want / template_box(s, margin).width
    img = (
        gray_crop
        if abs(f - 1.0) < 0.02
        else cv2.resize(gray_crop, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    )
    tb = template_box(s, margin).scaled(f)
    cx, cy, w = (tb.left + tb.right) / 2, (tb.top + tb.bottom) / 2, tb.width
    best = NO_WINDOW
    for b in _referee_detector().detect(img):
        bx, by = (b.left + b.right) / 2, (b.top + b.bottom) / 2
        if np.hypot(bx - cx, by - cy) <= 0.5 * w and 0.6 <= b.width / w <= 1.6:
            best = max(best, b.score)
    return float(best)


def referee_score(gray: np.ndarray, landmarks: np.ndarray) -> float:
    """Referee score of a candidate: ``gray`` (frame) warped by its ``landmarks`` into the canonical crop."""
    m = crop_transform(landmarks, REFEREE_SIZE, REFEREE_MARGIN)
    crop = cv2.warpAffine(
        gray, m, (REFEREE_SIZE, REFEREE_SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
    )
    return referee_on_crop(crop, REFEREE_MARGIN)


def judge(gray: np.ndarray, box: Box, landmarker: Landmarker, cfg: FaceConfig) -> Candidate:
    """Landmark one box and judge it (fit error, referee score, plausibility)."""
    pts = landmarker.landmarks(gray, box)
    err = fit_error(pts)
    ref = referee_score(gray, pts) if np.isfinite(err) else NO_WINDOW
    ok = err <= cfg.max_fit_error and ref >= cfg.plausible_score
    return Candidate(box, pts, err, ref, bool(ok))


def choose(cands: list[Candidate]) -> Candidate | None:
    """The plausible candidate with the highest referee score (ties within 0.05: lower fit error)."""
    good = [c for c in cands if c.plausible]
    if not good:
        return None
    top = max(c.referee for c in good)
    return min((c for c in good if c.referee >= top - 0.05), key=lambda c: c.fit_error)


def locate_face(gray: np.ndarray, detector: FaceDetector, landmarker: Landmarker, cfg: FaceConfig) -> FaceFit:
    """Detect on a copy downscaled to ``cfg.detect_max_side``, judge every candidate at full resolution.

    Raises:
        FaceIssue: ``no_face`` (no box); ``face_too_small`` (every box below ``cfg.min_face``);
            ``implausible_face`` (boxes, none plausible); ``several_faces`` (more than one plausible
            face and ``cfg.multiple_faces == "fail"``).
    """
    gray = to_gray(gray)
    h, w = gray.shape[:2]
    f = min(1.0, cfg.detect_max_side / max(h, w))
    small = gray if f == 1.0 else cv2.resize(gray, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    boxes = [b.scaled(1.0 / f) for b in detector.detect(small)]
    if not boxes:
        raise FaceIssue("no_face", f"{detector.name} found no face")
    sized = [b for b in boxes if min(b.width, b.height) >= cfg.min_face]
    if not sized:
        b = max(boxes, key=lambda b: b.score)
        raise FaceIssue(
            "face_too_small",
            f"face box {b.width:.0f}x{b.height:.0f} px is below face.min_face={cfg.min_face}; "
            "lower face.min_face if the data really has small faces",
        )
    cands = [judge(gray, b, landmarker, cfg) for b in sized[: cfg.max_candidates]]
    best = choose(cands)
    if best is None:
        worst = ", ".join(
            f"score {c.box.score:.2f} referee {c.referee:.2f} fit {c.fit_error:.0f}%" for c in cands
        )
        raise FaceIssue(
            "implausible_face",
            f"{detector.name} found {len(cands)} candidate(s), none a plausible face ({worst}; need referee >= "
            f"{cfg.plausible_score} and fit <= {cfg.max_fit_error}% IOD)",
        )
    n_good = sum(c.plausible for c in cands)
    if n_good > 1 and cfg.multiple_faces == "fail":
        raise FaceIssue("several_faces", f"{n_good} plausible faces found and face.multiple_faces is 'fail'")
    note = ""
    if len(cands) > 1:
        note = (
            f"{len(cands)} candidates, {n_good} plausible; took referee {best.referee:.2f}, fit "
            f"{best.fit_error:.1f}% IOD, detector score {best.box.score:.2f}"
        )
    return FaceFit(best.box, best.landmarks, n_good, note, best.fit_error, best.referee, tuple(cands))
