"""Face backends: detectors and landmarkers behind two small interfaces, each in one registry.

The embedded default is dlib's HOG detector (``dlib-hog``) and dlib's 68-point shape predictor
(``dlib-68``, the model file shipped by the ``face-recognition-models`` package). Backends are
built lazily, once per process (a worker loads the 100 MB predictor once, not once per clip).
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from mepipe.errors import ConfigError
from mepipe.provenance import cached_file_sha256
from mepipe.registry import Registry


@dataclass(frozen=True)
class Box:
    """A face box in pixel coordinates of the image it was found in (right/bottom exclusive)."""

    left: float
    top: float
    right: float
    bottom: float
    score: float = 0.0

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def scaled(self, f: float) -> Box:
        return Box(self.left * f, self.top * f, self.right * f, self.bottom * f, self.score)


class FaceDetector(ABC):
    """Finds faces in a ``(H, W) uint8`` grayscale image."""

    name: str = ""

    @abstractmethod
    def detect(self, gray: np.ndarray) -> list[Box]: ...

    def model_files(self) -> dict[str, str]:
        """``{file name: sha256}`` of the model files this backend loads (recorded in every shard)."""
        return {}


class Landmarker(ABC):
    """Predicts 68 iBUG landmarks ``(68, 2) float32`` (x, y) for one box in a grayscale image."""

    name: str = ""

    @abstractmethod
    def landmarks(self, gray: np.ndarray, box: Box) -> np.ndarray: ...

    def model_files(self) -> dict[str, str]:
        return {}


DETECTORS: Registry[type[FaceDetector]] = Registry("face detector")
LANDMARKERS: Registry[type[Landmarker]] = Registry("landmarker")


def dlib_model_path(file: str = "shape_predictor_68_face_landmarks.dat") -> Path:
    """Path of a dlib model file shipped by ``face-recognition-models``, found without importing it
    (its ``__init__`` imports ``pkg_resources``, which new setuptools no longer ship)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the dlib model files are missing: install them with `pip install face-recognition-models==0.3.0`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / file
    if not path.is_file():
        raise ConfigError(f"{path} is missing; reinstall face-recognition-models==0.3.0")
    return path


@DETECTORS.register("dlib-hog")
class DlibHogDetector(FaceDetector):
    """dlib's frontal HOG + linear SVM detector (no model file; single-threaded)."""

    name = "dlib-hog"

    def __init__(self, upsample: int = 0) -> None:
        import dlib

        self._det = dlib.get_frontal_face_detector()
        self.upsample = upsample

    def detect(self, gray: np.ndarray) -> list[Box]:
        rects, scores, _ = self._det.run(gray, self.upsample, 0.0)
        return [
            Box(r.left(), r.top(), r.right(), r.bottom(), float(s))
            for r, s in zip(rects, scores, strict=True)
        ]


@LANDMARKERS.register("dlib-68")
class Dlib68Landmarker(Landmarker):
    """dlib's ensemble-of-regression-trees 68-point predictor (iBUG 300-W; non-commercial model)."""

    name = "dlib-68"

    def __init__(self) -> None:
        import dlib

        self._path = dlib_model_path()
        self._sp = dlib.shape_predictor(str(self._path))
        self._dlib = dlib

    def landmarks(self, gray: np.ndarray, box: Box) -> np.ndarray:
        rect = self._dlib.rectangle(
            int(round(box.left)), int(round(box.top)), int(round(box.right)), int(round(box.bottom))
        )
        shape = self._sp(gray, rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)

    def model_files(self) -> dict[str, str]:
        return {self._path.name: cached_file_sha256(str(self._path))}


def get_detector(name: str, upsample: int = 0) -> FaceDetector:
    """The process-wide instance of detector ``name`` with ``upsample`` (built on first use)."""
    return _detector(name, int(upsample))


@cache
def _detector(name: str, upsample: int) -> FaceDetector:
    cls = DETECTORS.get(name)
    return cls(upsample=upsample) if "upsample" in cls.__init__.__code__.co_varnames else cls()


@cache
def get_landmarker(name: str) -> Landmarker:
    """The process-wide instance of landmarker ``name`` (built on first use)."""
    return LANDMARKERS.get(name)()
