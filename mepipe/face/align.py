"""The face stage: find the face on a clip's reference frame and align every frame with it.

Standard MER practice: detect and landmark once, on the reference frame (the onset by default), and
apply that *one* similarity transform to every frame of the clip, so head jitter is not mistaken for
facial motion. ``mode="per_frame"`` instead fits every frame (landmarks tracked from the previous
frame's landmark box) and smooths the transform parameters over time.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mepipe.config import AlignConfig, FaceConfig
from mepipe.face.backends import Box, FaceDetector, Landmarker
from mepipe.face.geometry import crop_transform, smooth_transforms


class FaceIssue(Exception):
    """No usable face; ``reason`` is the manifest reason code (``no_face``, ``face_too_small`` ...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class FaceFit:
    """The face found on one frame. ``box`` and ``landmarks`` ``(68, 2) float32`` are in that
    frame's pixel coordinates; ``faces_found`` counts all detections; ``note`` says what was chosen."""

    box: Box
    landmarks: np.ndarray
    faces_found: int
    note: str = ""


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3) uint8 RGB`` -> ``(H, W) uint8``."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def locate_face(gray: np.ndarray, detector: FaceDetector, landmarker: Landmarker, cfg: FaceConfig) -> FaceFit:
    """Detect on a copy downscaled to ``cfg.detect_max_side``, landmark at full resolution.

    Raises:
        FaceIssue: ``no_face``; ``several_faces`` (when ``cfg.multiple_faces == "fail"``);
            ``face_too_small`` (largest box side < ``cfg.min_face`` source pixels).
    """
    h, w = gray.shape[:2]
    f = min(1.0, cfg.detect_max_side / max(h, w))
    small = gray if f == 1.0 else cv2.resize(gray, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    boxes = [b.scaled(1.0 / f) for b in detector.detect(small)]
    if not boxes:
        raise FaceIssue("no_face", f"{detector.name} found no face")
    note = ""
    if len(boxes) > 1:
        if cfg.multiple_faces == "fail":
            raise FaceIssue(
                "several_faces", f"{detector.name} found {len(boxes)} faces and multiple_faces is 'fail'"
            )
        note = f"{len(boxes)} faces found, took the largest"
    box = max(boxes, key=lambda b: b.area)
    if min(box.width, box.height) < cfg.min_face:
        raise FaceIssue(
            "face_too_small",
            f"face box {box.width:.0f}x{box.height:.0f} px is below face.min_face={cfg.min_face}; "
            "lower face.min_face if the data really has small faces",
        )
    return FaceFit(box, landmarker.landmarks(gray, box), len(boxes), note)


def landmark_box(pts: np.ndarray) -> Box:
    """A detector-like box around ``(68, 2)`` landmarks (used to track from frame to frame)."""
    lo, hi = pts.min(0), pts.max(0)
    w = hi[0] - lo[0]
    return Box(lo[0] - 0.05 * w, lo[1] - 0.25 * w, hi[0] + 0.05 * w, hi[1] + 0.05 * w)


def warp_to_crop(rgb: np.ndarray, m: np.ndarray, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """Warp a frame into the ``(size, size, 3) uint8`` crop with the ``(2, 3)`` source->crop transform."""
    return cv2.warpAffine(
        rgb, m, (size, size), dst=out, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def clip_transform(fit: FaceFit, cfg: AlignConfig) -> np.ndarray:
    """The one ``(2, 3)`` transform applied to every frame in ``clip`` mode."""
    return crop_transform(fit.landmarks, cfg.crop_size, cfg.margin)


def per_frame_transforms(landmarks: np.ndarray, cfg: AlignConfig) -> np.ndarray:
    """``(T, 68, 2)`` landmarks -> smoothed ``(T, 2, 3)`` transforms (``per_frame`` mode)."""
    raw = np.stack([crop_transform(p, cfg.crop_size, cfg.margin) for p in landmarks])
    return smooth_transforms(raw, cfg.smoothing)
