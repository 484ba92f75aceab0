"""dlib backends: the HOG detector (``dlib-hog``, the default), the CNN (MMOD) detector (``dlib-cnn``)
and the 68-point shape predictor (``dlib-68``, the default landmarker).

The model files come from the ``face-recognition-models`` package (nothing is downloaded).

Scores: ``dlib-hog`` returns the SVM margin of each window from ``detector.run`` (a frontal face of
~90 px scores 1-2.5; dlib's own detection threshold is 0); ``dlib-cnn`` the MMOD margin (~1 on a clear
face). Both are unbounded and not comparable with each other.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import numpy as np

from mepipe.errors import ConfigError
from mepipe.face.backends.base import DETECTORS, LANDMARKERS, Box, FaceDetector, Landmarker, dlib_model_path
from mepipe.provenance import cached_file_sha256

DLIB_LICENCE = "dlib: Boost Software License"
IBUG_LICENCE = "model trained on iBUG 300-W: non-commercial use only"


def _dlib_available() -> tuple[bool, str]:
    try:
        import dlib  # noqa: F401
    except ImportError:
        return False, "dlib is not installed: `pip install dlib-bin`"
    return True, ""


_HOG = threading.local()


def _hog_detector():
    """This thread's dlib HOG detector: building one takes ~0.3 s, and the face detector and the
    referee (``dlib-hog`` at another threshold) share it; dlib's detector is not safe across threads."""
    if not hasattr(_HOG, "det"):
        import dlib

        _HOG.det = dlib.get_frontal_face_detector()
    return _HOG.det


def _model_or_none(file: str):
    try:
        return dlib_model_path(file)
    except ConfigError:
        return None


def _file_availability(file: str) -> tuple[bool, str]:
    ok, why = _dlib_available()
    if ok and _model_or_none(file) is None:
        return False, f"{file} not found: `pip install face-recognition-models==0.3.0`"
    return ok, why


@DETECTORS.register("dlib-hog")
class DlibHogDetector(FaceDetector):
    """dlib's frontal HOG + linear SVM detector (5 sub-detectors, frontal and rotated; no model file).

    Windows scoring above ``threshold`` (default -0.3, below dlib's 0) are returned: small and rotated
    real faces score -0.1..0.5 (measured, see ``benchmarks/face_plausibility.py``), and the false hits a
    lower threshold lets through are rejected by the plausibility referee.
    """

    name = "dlib-hog"
    licence = DLIB_LICENCE + " (no model file)"
    score_kind = "SVM margin (unbounded; dlib's threshold is 0)"
    low_score: ClassVar[float] = 0.3
    options_allowed = ("threshold",)

    def __init__(self, upsample: int = 0, threshold: float = -0.3) -> None:
        self.upsample = upsample
        self.threshold = float(threshold)

    def detect(self, gray: np.ndarray) -> list[Box]:
        rects, scores, _ = _hog_detector().run(np.ascontiguousarray(gray), self.upsample, self.threshold)
        boxes = [
            Box(r.left(), r.top(), r.right(), r.bottom(), float(s))
            for r, s in zip(rects, scores, strict=True)
        ]
        return sorted(boxes, key=lambda b: -b.score)

    @classmethod
    def availability(cls, options: dict[str, Any]) -> tuple[bool, str]:
        return _dlib_available()


@DETECTORS.register("dlib-cnn")
class DlibCnnDetector(FaceDetector):
    """dlib's CNN (max-margin object detection) face detector, ``mmod_human_face_detector.dat``.

    More robust to pose and lighting than HOG, ~30-100x slower on a CPU (it runs once per clip, on the
    reference frame, downscaled to ``face.detect_max_side``). Finds faces of ~80 px and more (per upsample).
    """

    name = "dlib-cnn"
    licence = DLIB_LICENCE + "; mmod_human_face_detector.dat: CC0 (dlib-models)"
    score_kind = "MMOD margin (unbounded; ~1 on a clear face)"
    low_score: ClassVar[float] = 0.3
    FILE = "mmod_human_face_detector.dat"

    def __init__(self, upsample: int = 0) -> None:
        import dlib

        self._path = dlib_model_path(self.FILE)
        self._det = dlib.cnn_face_detection_model_v1(str(self._path))
        self.upsample = upsample

    def detect(self, gray: np.ndarray) -> list[Box]:
        found = self._det(np.ascontiguousarray(gray), self.upsample)
        boxes = [
            Box(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), float(d.confidence))
            for d in found
        ]
        return sorted(boxes, key=lambda b: -b.score)

    @classmethod
    def model_path(cls, options: dict[str, Any]):
        return _model_or_none(cls.FILE)

    @classmethod
    def availability(cls, options: dict[str, Any]) -> tuple[bool, str]:
        return _file_availability(cls.FILE)

    def model_files(self) -> dict[str, str]:
        return {self._path.name: cached_file_sha256(str(self._path))}


@LANDMARKERS.register("dlib-68")
class Dlib68Landmarker(Landmarker):
    """dlib's ensemble-of-regression-trees 68-point predictor (iBUG 300-W; non-commercial model).

    It always returns a face-shaped set of points, even on a region without a face (a blank wall fits
    the canonical template as well as a real face), which is why plausibility needs a referee.
    """

    name = "dlib-68"
    licence = DLIB_LICENCE + "; shape_predictor_68_face_landmarks.dat: " + IBUG_LICENCE
    FILE = "shape_predictor_68_face_landmarks.dat"

    def __init__(self) -> None:
        import dlib

        self._path = dlib_model_path(self.FILE)
        self._sp = dlib.shape_predictor(str(self._path))
        self._dlib = dlib

    def landmarks(self, gray: np.ndarray, box: Box) -> np.ndarray:
        rect = self._dlib.rectangle(
            int(round(box.left)), int(round(box.top)), int(round(box.right)), int(round(box.bottom))
        )
        shape = self._sp(np.ascontiguousarray(gray), rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)

    @classmethod
    def model_path(cls, options: dict[str, Any]):
        return _model_or_none(cls.FILE)

    @classmethod
    def availability(cls, options: dict[str, Any]) -> tuple[bool, str]:
        return _file_availability(cls.FILE)

    def model_files(self) -> dict[str, str]:
        return {self._path.name: cached_file_sha256(str(self._path))}
