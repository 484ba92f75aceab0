"""Small alignment helpers kept under their historical names (the face stage lives in
:mod:`mepipe.face.stage`; candidates in :mod:`mepipe.face.detect`; aligners in :mod:`mepipe.face.register`).
"""

from __future__ import annotations

import numpy as np

from mepipe.config import AlignConfig
from mepipe.face.detect import FaceFit, FaceIssue, locate_face, to_gray
from mepipe.face.fit import landmark_box
from mepipe.face.geometry import crop_transform
from mepipe.face.register import warp_to_crop

__all__ = ["FaceFit", "FaceIssue", "clip_transform", "landmark_box", "locate_face", "to_gray", "warp_to_crop"]


def clip_transform(fit: FaceFit, cfg: AlignConfig) -> np.ndarray:
    """The one ``(2, 3)`` transform applied to every frame in ``clip`` mode."""
    return crop_transform(fit.landmarks, cfg.crop_size, cfg.margin)
