"""The two backend interfaces (face detectors, 68-point landmarkers), their registries and ``Box``.

Every backend is a class registered by name in :data:`DETECTORS` or :data:`LANDMARKERS`; the pipeline's
``face.detector`` / ``face.landmarker`` name one, ``face.options`` passes backend options (e.g. the FAN
weights file). A backend describes itself (:meth:`FaceDetector.describe`: usable here or not and why,
model file, sha256, licence) for ``mepipe backends`` and for the shards' ``model_files`` attribute.

Detector scores are each backend's own confidence (dlib: SVM / CNN margins, unbounded; YuNet: 0..1).
They are comparable between the boxes of one backend, not across backends; the face stage therefore
chooses among candidates with a backend-independent referee (see :mod:`mepipe.face.detect`) and only
records the detector's score as ``face_score``, flagged against the backend's own ``low_score``.
"""

from __future__ import annotations

import importlib.util
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mepipe.errors import ConfigError
from mepipe.registry import Registry


@dataclass(frozen=True)
class Box:
    """A face box in pixel coordinates of the image it was found in (right/bottom exclusive).

    ``score`` is the detector's confidence for this box, on the backend's own scale.
    """

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

    def iou(self, other: Box) -> float:
        """Intersection over union with ``other`` (0 when disjoint)."""
        w = min(self.right, other.right) - max(self.left, other.left)
        h = min(self.bottom, other.bottom) - max(self.top, other.top)
        inter = max(w, 0.0) * max(h, 0.0)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class BackendInfo:
    """What ``mepipe backends`` prints for one backend.

    Attributes:
        kind: ``detector`` or ``landmarker``.
        name: registry name.
        usable: whether it can run here; ``why`` says why not (or how it runs).
        model_file: the model file it loads (path, or ``''`` when none / not found).
        sha256: of ``model_file`` (``''`` when not available).
        licence: licence of the code and of the model, as published.
        score: what its confidence means (detectors).
    """

    kind: str
    name: str
    usable: bool
    why: str
    model_file: str
    sha256: str
    licence: str
    score: str = ""


class Backend:
    """Shared by detectors and landmarkers: options, availability, model files."""

    name: ClassVar[str] = ""
    licence: ClassVar[str] = ""
    options_allowed: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        """Raise :class:`ConfigError` for options this backend does not take, or bad values.

        Called when the pipeline is parsed, before anything is written.
        """
        unknown = sorted(set(options) - set(cls.options_allowed))
        if unknown:
            allowed = ", ".join(cls.options_allowed) or "none"
            raise ConfigError(f"face.options: {cls.name} takes no option {unknown} (allowed: {allowed})")

    @classmethod
    def model_path(cls, options: dict[str, Any]) -> Path | None:
        """The model file this backend would load with ``options`` (``None``: no file)."""
        return None

    @classmethod
    def availability(cls, options: dict[str, Any]) -> tuple[bool, str]:
        """``(usable, why)`` without building the backend."""
        return True, ""

    def model_files(self) -> dict[str, str]:
        """``{file name: sha256}`` of the model files this backend loads (recorded in every shard)."""
        return {}


class FaceDetector(Backend):
    """Finds faces in a ``(H, W) uint8`` grayscale image.

    Class attributes:
        score_kind: what :attr:`Box.score` means for this backend.
        low_score: a chosen face whose score is below this gets the ``low_face_score`` flag (see
            :mod:`mepipe.face.detect` for where each value comes from).
    """

    score_kind: ClassVar[str] = ""
    low_score: ClassVar[float] = 0.0

    @abstractmethod
    def detect(self, gray: np.ndarray) -> list[Box]:
        """Boxes (with scores), in ``gray``'s pixels, best score first."""


class Landmarker(Backend):
    """Predicts 68 iBUG landmarks ``(68, 2) float32`` (x, y) for one box in a grayscale image."""

    @abstractmethod
    def landmarks(self, gray: np.ndarray, box: Box) -> np.ndarray: ...


DETECTORS: Registry[type[FaceDetector]] = Registry("face detector")
LANDMARKERS: Registry[type[Landmarker]] = Registry("landmarker")


def package_file(package: str, *parts: str) -> Path | None:
    """A file inside an installed package, found without importing the package (``None``: absent)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    return path if path.exists() else None


def dlib_model_path(file: str = "shape_predictor_68_face_landmarks.dat") -> Path:
    """Path of a dlib model file shipped by ``face-recognition-models``, found without importing it
    (its ``__init__`` imports ``pkg_resources``, which new setuptools no longer ship)."""
    if importlib.util.find_spec("face_recognition_models") is None:
        raise ConfigError(
            "the dlib model files are missing: install them with `pip install face-recognition-models==0.3.0`"
        )
    path = package_file("face_recognition_models", "models", file)
    if path is None or not path.is_file():
        raise ConfigError(
            f"{file} is missing from face_recognition_models; reinstall face-recognition-models==0.3.0"
        )
    return path
