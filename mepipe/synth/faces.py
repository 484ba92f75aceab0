"""Base photographs, dlib landmarks, and deterministic per-subject face variants.

A *base face* is a real photograph with its 68 dlib landmarks (by default the astronaut photograph, :mod:`mepipe.synth.photo`;
optionally the user's portraits). A *subject* is a base face placed on the dataset's canvas, morphed
(face width, eye spacing, brow height, nose length, mouth width, jaw length), re-coloured (tint,
gamma, contrast, brightness), optionally mirrored, and composited over a softened background. The
subject's landmarks are carried through every geometric step exactly (no re-detection).
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mepipe.errors import MepipeError
from mepipe.synth import landmarks as lm
from mepipe.synth.fields import AnchorField, grid, move_points

PORTRAIT_SUFFIXES = (".jpg", ".jpeg", ".png")


# ----------------------------------------------------------------------------------------- dlib


def shape_predictor_path() -> Path:
    """Path of dlib's ``shape_predictor_68_face_landmarks.dat`` from ``face_recognition_models``.

    The package is located without importing it (its import needs ``pkg_resources``, which recent
    setuptools no longer ships).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MepipeError(
            "face_recognition_models is not installed; `pip install face-recognition-models==0.3.0` "
            "provides the dlib 68-point model used by mepipe.synth"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise MepipeError(f"{path} is missing; reinstall face-recognition-models==0.3.0")
    return path


@lru_cache(maxsize=1)
def dlib_models() -> tuple[Any, Any]:
    """``(frontal_face_detector, shape_predictor_68)``, loaded once per process."""
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(shape_predictor_path()))


def detect_faces(image: np.ndarray, upsample: int = 0) -> list[tuple[int, int, int, int]]:
    """dlib HOG face boxes ``(left, top, right, bottom)`` on an ``(H, W, 3)`` RGB or ``(H, W)`` uint8 image."""
    detector, _ = dlib_models()
    return [
        (r.left(), r.top(), r.right(), r.bottom()) for r in detector(np.ascontiguousarray(image), upsample)
    ]


def predict_landmarks(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """dlib 68-point landmarks inside ``box``; returns ``(68, 2)`` float64 pixel coordinates."""
    import dlib

    _, predictor = dlib_models()
    shape = predictor(np.ascontiguousarray(image), dlib.rectangle(*box))
    return np.array([[shape.part(i).x, shape.part(i).y] for i in range(lm.N_POINTS)], dtype=np.float64)


def find_face(
    image: np.ndarray, upsamples: tuple[int, ...] = (0, 1)
) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """Largest dlib face and its landmarks, trying each upsampling level in turn; None if no face."""
    for up in upsamples:
        boxes = detect_faces(image, up)
        if boxes:
            box = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
            return box, predict_landmarks(image, box)
    return None


# ------------------------------------------------------------------------------------ base faces


@dataclass(frozen=True)
class BaseFace:
    """A real photograph with one face.

    Attributes:
        name: ``"astronaut"`` or the portrait's file name.
        image: ``(H, W, 3)`` uint8 RGB.
        landmarks: ``(68, 2)`` float64 dlib landmarks in ``image`` pixels.
    """

    name: str
    image: np.ndarray
    landmarks: np.ndarray


def load_base_faces(faces_dir: Path | None = None) -> list[BaseFace]:
    """The base photographs: the bundled astronaut photograph, or every portrait in ``faces_dir``.

    Portraits (``.jpg/.jpeg/.png``, one face each) are used in sorted file-name order.

    Raises:
        MepipeError: when ``faces_dir`` has no portraits or dlib finds no face in one of them.
    """
    if faces_dir is None:
        from mepipe.synth.photo import astronaut

        image = astronaut()
        return [_base_face("astronaut", image)]
    folder = Path(faces_dir).expanduser()
    files = (
        sorted(p for p in folder.iterdir() if p.suffix.lower() in PORTRAIT_SUFFIXES)
        if folder.is_dir()
        else []
    )
    if not files:
        raise MepipeError(
            f"no portraits (.jpg/.png) in {folder}; pass a folder of one-face photos or omit faces_dir"
        )
    faces = []
    for path in files:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise MepipeError(f"{path}: cannot be read as an image; remove it from {folder}")
        faces.append(_base_face(path.name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    return faces


def _base_face(name: str, image: np.ndarray) -> BaseFace:
    found = find_face(image)
    if found is None:
        raise MepipeError(
            f"{name}: dlib finds no face; use a frontal portrait with the face at least 80 px wide"
        )
    return BaseFace(name, image, found[1])


# -------------------------------------------------------------------------------------- subjects


@dataclass(frozen=True)
class SubjectParams:
    """Random appearance parameters of one synthetic subject (drawn by :func:`sample_subject_params`).

    Geometric sizes are in units of the inter-ocular distance (IOD) unless noted.

    Attributes:
        base_index: which base face (index into the list of base faces).
        mirror: flip the photograph horizontally first.
        face_size: position in the layout's face-width range, 0..1.
        roll_deg: in-plane rotation of the placed face, degrees.
        centre_dx, centre_dy: face-centre offset from the canvas anchor, as fractions of width/height.
        face_width: relative widening of the jaw line (0.05 = 5 % wider).
        eye_spacing: extra distance between the eyes, IOD.
        brow_height: brow raise, IOD.
        nose_length: lengthening of the nose (nose tip moves down), IOD.
        mouth_width: relative widening of the mouth.
        jaw_length: chin moves down by this, IOD.
        gamma, contrast, brightness: photometric changes (brightness in grey levels).
        tint: per-channel RGB gains.
        bg_grey: background gradient grey level (top), 0..255.
        bg_tint: per-channel RGB gains of the background gradient.
        bg_dark: how much of the (blurred) original surroundings is kept, 0..1.
    """

    base_index: int
    mirror: bool
    face_size: float
    roll_deg: float
    centre_dx: float
    centre_dy: float
    face_width: float
    eye_spacing: float
    brow_height: float
    nose_length: float
    mouth_width: float
    jaw_length: float
    gamma: float
    contrast: float
    brightness: float
    tint: tuple[float, float, float]
    bg_grey: float
    bg_tint: tuple[float, float, float]
    bg_dark: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_subject_params(rng: np.random.Generator, n_bases: int, subject_index: int) -> SubjectParams:
    """Draw one subject's appearance. Base faces are used round-robin by ``subject_index``."""
    u = rng.uniform
    return SubjectParams(
        base_index=subject_index % n_bases,
        mirror=bool(rng.random() < 0.5),
        face_size=float(u(0.0, 1.0)),
        roll_deg=float(u(-2.0, 2.0)),
        centre_dx=float(u(-0.05, 0.05)),
        centre_dy=float(u(-0.03, 0.03)),
        face_width=float(u(-0.07, 0.07)),
        eye_spacing=float(u(-0.06, 0.06)),
        brow_height=float(u(-0.06, 0.06)),
        nose_length=float(u(-0.08, 0.08)),
        mouth_width=float(u(-0.08, 0.08)),
        jaw_length=float(u(-0.08, 0.08)),
        gamma=float(np.exp(u(np.log(0.8), np.log(1.25)))),
        contrast=float(u(0.85, 1.15)),
        brightness=float(u(-12.0, 12.0)),
        tint=tuple(float(t) for t in u(0.9, 1.1, size=3)),  # type: ignore[arg-type]
        bg_grey=float(u(90.0, 210.0)),
        bg_tint=tuple(float(t) for t in u(0.9, 1.1, size=3)),  # type: ignore[arg-type]
        bg_dark=float(u(0.3, 0.6)),
    )


@dataclass(frozen=True)
class Subject:
    """A subject rendered on a dataset canvas, neutral expression, canonical head pose.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB canvas.
        landmarks: ``(68, 2)`` float64 landmark positions in canvas pixels (exact, not re-detected).
        params: the appearance parameters.
        base_name: name of the base photograph.
    """

    image: np.ndarray
    landmarks: np.ndarray
    params: SubjectParams
    base_name: str

    @property
    def iod(self) -> float:
        return lm.interocular(self.landmarks)

    @property
    def centre(self) -> np.ndarray:
        return lm.face_centre(self.landmarks)


def make_subject(
    base: BaseFace, params: SubjectParams, canvas: tuple[int, int], face_width_px: tuple[float, float]
) -> Subject:
    """Render a subject on a ``canvas = (W, H)`` canvas.

    Steps: optional mirror; similarity placement so that the jaw width (landmark 0 to 16) is
    ``face_width_px[0] + face_size * (face_width_px[1] - face_width_px[0])`` pixels and the face
    centre lands near ``(0.5 W, 0.47 H)``; landmark-anchored morph; photometric change; background.
    Placement and morph are applied in one resampling.

    Returns:
        The :class:`Subject`, whose ``image`` is ``(H, W, 3)`` uint8 RGB.
    """
    width, height = canvas
    photo, pts = base.image, base.landmarks
    if params.mirror:
        photo = np.ascontiguousarray(photo[:, ::-1])
        pts = lm.mirror_landmarks(pts, photo.shape[1])
    # similarity placement photo -> canvas
    jaw_w = float(np.linalg.norm(pts[16] - pts[0]))
    target_w = face_width_px[0] + params.face_size * (face_width_px[1] - face_width_px[0])
    scale = target_w / max(jaw_w, 1e-6)
    src_c = lm.face_centre(pts)
    dst_c = np.array([width * (0.5 + params.centre_dx), height * (0.47 + params.centre_dy)])
    placement = cv2.getRotationMatrix2D((float(src_c[0]), float(src_c[1])), params.roll_deg, scale)
    placement[:, 2] += dst_c - src_c
    placed = np.c_[pts, np.ones(len(pts))] @ placement.T
    # morph in canvas pixels; content moves forward by the field, so sample backwards
    morph = morph_fields(placed, params)
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    motion = grid(morph, width, height)
    qx, qy = xs - motion[..., 0], ys - motion[..., 1]
    inv = cv2.invertAffineTransform(placement)
    map_x = (inv[0, 0] * qx + inv[0, 1] * qy + inv[0, 2]).astype(np.float32)
    map_y = (inv[1, 0] * qx + inv[1, 1] * qy + inv[1, 2]).astype(np.float32)
    image = cv2.remap(photo, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)
    landmarks = move_points(morph, placed)
    image = _recolour(image, params)
    image = _composite_background(image, landmarks, params)
    return Subject(image, landmarks, params, base.name)


def morph_fields(points: np.ndarray, params: SubjectParams) -> list[AnchorField]:
    """The identity morph as forward-motion fields anchored at the (placed) landmarks ``(68, 2)``."""
    pts = np.asarray(points, dtype=np.float64)
    iod = lm.interocular(pts)
    x_axis, y_axis = lm.face_axes(pts)
    up = -y_axis
    centre = lm.face_centre(pts)
    fields = []
    # face width: jaw points move sideways in proportion to their distance from the midline
    jaw = list(lm.JAW)
    side = (pts[jaw] - centre) @ x_axis
    fields.append(
        AnchorField.build(pts[jaw], np.outer(params.face_width * side, x_axis), [0.3 * iod] * len(jaw))
    )
    # eye spacing: each eye moves away from (or towards) the other
    eyes = list(lm.EYE_R) + list(lm.EYE_L)
    signs = np.array([-1.0] * 6 + [1.0] * 6)
    fields.append(
        AnchorField.build(pts[eyes], np.outer(signs * params.eye_spacing * iod / 2, x_axis), [0.2 * iod] * 12)
    )
    # brow height
    brows = list(lm.BROW_R) + list(lm.BROW_L)
    fields.append(
        AnchorField.build(pts[brows], np.outer([params.brow_height * iod] * 10, up), [0.2 * iod] * 10)
    )
    # nose length: the lower nose moves down, the bridge stays
    nose = [30, 31, 32, 33, 34, 35]
    fields.append(
        AnchorField.build(pts[nose], np.outer([-params.nose_length * iod] * 6, up), [0.15 * iod] * 6)
    )
    # mouth width
    mouth = list(lm.MOUTH)
    m_side = (pts[mouth] - pts[mouth].mean(0)) @ x_axis
    fields.append(
        AnchorField.build(pts[mouth], np.outer(params.mouth_width * m_side, x_axis), [0.15 * iod] * 20)
    )
    # jaw length: chin region moves down, most at the chin tip
    chin = [5, 6, 7, 8, 9, 10, 11]
    weight = np.array([0.4, 0.7, 0.9, 1.0, 0.9, 0.7, 0.4])
    fields.append(
        AnchorField.build(pts[chin], np.outer(-weight * params.jaw_length * iod, up), [0.3 * iod] * 7)
    )
    return fields


def _recolour(image: np.ndarray, params: SubjectParams) -> np.ndarray:
    x = image.astype(np.float32) / 255.0
    x = np.power(x, params.gamma)
    x = (x - 0.5) * params.contrast + 0.5
    x = x * np.asarray(params.tint, dtype=np.float32) + params.brightness / 255.0
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _composite_background(image: np.ndarray, points: np.ndarray, params: SubjectParams) -> np.ndarray:
    """Keep the head (soft ellipse) and replace the rest by a darkened blur mixed with a gradient."""
    height, width = image.shape[:2]
    jaw_w = float(np.linalg.norm(points[16] - points[0]))
    centre = lm.face_centre(points)
    x_axis, y_axis = lm.face_axes(points)
    head_c = centre - 0.2 * jaw_w * y_axis
    angle = float(np.degrees(np.arctan2(x_axis[1], x_axis[0])))
    mask = np.zeros((height, width), dtype=np.float32)
    axes = (int(round(0.95 * jaw_w)), int(round(1.3 * jaw_w)))
    cv2.ellipse(mask, (int(round(head_c[0])), int(round(head_c[1]))), axes, angle, 0, 360, 1.0, thickness=-1)
    mask = cv2.GaussianBlur(mask, (0, 0), 0.12 * jaw_w)[..., None]
    blur = cv2.GaussianBlur(image, (0, 0), 10.0).astype(np.float32)
    ramp = np.linspace(1.0, 0.7, height, dtype=np.float32)[:, None, None]
    gradient = params.bg_grey * ramp * np.asarray(params.bg_tint, dtype=np.float32)[None, None, :]
    background = params.bg_dark * blur + (1.0 - params.bg_dark) * gradient
    out = mask * image.astype(np.float32) + (1.0 - mask) * background
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
