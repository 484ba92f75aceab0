"""``yunet``: libfacedetection's YuNet through the ``yuface`` wheel (``pip install 'mepipe[yunet]'``).

The CNN weights are compiled into the wheel's library, so nothing is loaded or downloaded. YuNet
returns a confidence in 0..1 per box (``yuface.detect`` gives it as a percentage) and five landmarks,
which mepipe does not use (the 68 points come from the landmarker). It finds faces from ~10 px up and
profile-ish faces HOG misses; note that the plausibility referee (dlib HOG on the aligned crop, see
:mod:`mepipe.face.detect`) still asks for a roughly frontal face.
"""

from __future__ import annotations

import importlib.util
from typing import Any, ClassVar

import numpy as np

from mepipe.face.backends.base import DETECTORS, Box, FaceDetector, package_file
from mepipe.provenance import cached_file_sha256


@DETECTORS.register("yunet")
class YuNetDetector(FaceDetector):
    """YuNet (libfacedetection 2023) via ``yuface``; options: ``threshold`` (confidence 0..1, default 0.3)."""

    name = "yunet"
    licence = "libfacedetection / yuface: BSD-3-Clause (weights compiled in)"
    score_kind = "confidence 0..1"
    low_score: ClassVar[float] = 0.7
    options_allowed = ("threshold",)

    def __init__(self, upsample: int = 0, threshold: float = 0.3) -> None:
        import yuface

        self._detect = yuface.detect
        self.threshold = float(threshold)
        self.upsample = upsample  # YuNet has no upsampling pass; kept for the common signature

    def detect(self, gray: np.ndarray) -> list[Box]:
        import cv2

        bgr = cv2.cvtColor(np.ascontiguousarray(gray), cv2.COLOR_GRAY2BGR) if gray.ndim == 2 else gray
        confs, boxes, _ = self._detect(np.ascontiguousarray(bgr), self.threshold)
        out = [
            Box(float(x), float(y), float(x + w), float(y + h), float(c) / 100.0)
            for c, (x, y, w, h) in zip(confs.tolist(), boxes.tolist(), strict=True)
        ]
        return sorted(out, key=lambda b: -b.score)

    @classmethod
    def availability(cls, options: dict[str, Any]) -> tuple[bool, str]:
        if importlib.util.find_spec("yuface") is None:
            return False, "yuface is not installed: `pip install 'mepipe[yunet]'` (or `pip install yuface`)"
        return True, "weights compiled into the yuface library"

    @classmethod
    def model_path(cls, options: dict[str, Any]):
        """The library holding the compiled-in weights (``libfacedetection.so``)."""
        return package_file("yuface", "libfacedetection.so")

    def model_files(self) -> dict[str, str]:
        path = self.model_path({})
        return {path.name: cached_file_sha256(str(path))} if path is not None else {}
