"""``fan``: the FAN 68-point landmarker of face-alignment, from a local weights file (nothing downloaded).

Install (``mepipe[fan]`` documents it): ``pip install --no-deps face-alignment==1.5.0``. Only the
network definition (``face_alignment/models/fan.py``, which needs nothing but torch) is loaded, straight
from its file: the package's ``__init__`` is never run, so its declared dependencies (``opencv-python``,
which would overwrite our headless ``cv2``, numba, scikit-image) are neither needed nor installed.

Weights: ``face.options.weights: PATH`` names a FAN ``state_dict`` saved with ``torch.save``, e.g. the
``2DFAN4-11f355bf06.pth.tar`` file face-alignment 1.5.0 downloads into
``$TORCH_HOME/hub/checkpoints/`` on its first run elsewhere (4 hourglass modules; ``face.options.modules``
for other sizes). A missing file is a config error naming it.

Pre-processing follows face-alignment's conventions (published facts, re-implemented here): the box
centre moved up by 12 % of its height, a square of ``200 * (w + h) / 195`` source pixels resampled to
256 x 256 RGB in 0..1; the last module's 64 x 64 heatmaps give each point (peak, refined a quarter
pixel towards the larger neighbour), mapped back to source pixels.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from mepipe.errors import ConfigError
from mepipe.face.backends.base import LANDMARKERS, Box, Landmarker, package_file
from mepipe.provenance import cached_file_sha256

CROP = 256
HEATMAP = 64
REFERENCE_SCALE = 195.0
SCALE_FACTOR = 200.0
CENTER_Y_OFFSET = 0.12
WEIGHTS_HELP = (
    "set face.options.weights to a local FAN state_dict, e.g. 2DFAN4-11f355bf06.pth.tar as face-alignment "
    "1.5.0 downloads it into $TORCH_HOME/hub/checkpoints/ (copy it from a machine with internet access)"
)
INSTALL_HELP = "install the model code with `pip install --no-deps face-alignment==1.5.0` (see mepipe[fan])"


def fan_module():
    """The ``face_alignment.models.fan`` module, loaded from its file without the package ``__init__``."""
    path = package_file("face_alignment", "models", "fan.py")
    if path is None:
        raise ConfigError(f"landmarker fan: face-alignment is not installed; {INSTALL_HELP}")
    spec = importlib.util.spec_from_file_location("mepipe_fan_model", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def crop_matrix(box: Box) -> np.ndarray:
    """``(2, 3)`` source -> 256 x 256 network input, the face-alignment framing of ``box``."""
    cx = (box.left + box.right) / 2.0
    cy = (box.top + box.bottom) / 2.0 - CENTER_Y_OFFSET * box.height
    side = SCALE_FACTOR * (box.width + box.height) / REFERENCE_SCALE
    k = CROP / side
    return np.array([[k, 0.0, CROP / 2.0 - k * cx], [0.0, k, CROP / 2.0 - k * cy]])


def decode_heatmaps(hm: np.ndarray) -> np.ndarray:
    """``(68, 64, 64)`` heatmaps -> ``(68, 2)`` points in 256-px input coordinates."""
    n, h, w = hm.shape
    flat = hm.reshape(n, -1).argmax(1)
    py, px = np.divmod(flat, w)
    pts = np.stack([px, py], 1).astype(np.float64)
    for j in range(n):
        x, y = px[j], py[j]
        if 0 < x < w - 1 and 0 < y < h - 1:
            pts[j, 0] += 0.25 * np.sign(hm[j, y, x + 1] - hm[j, y, x - 1])
            pts[j, 1] += 0.25 * np.sign(hm[j, y + 1, x] - hm[j, y - 1, x])
    return (pts + 0.5) * (CROP / HEATMAP) - 0.5


@LANDMARKERS.register("fan")
class FanLandmarker(Landmarker):
    """face-alignment's FAN (stacked hourglasses, heatmap regression), CPU, from ``face.options.weights``."""

    name = "fan"
    licence = "face-alignment code: BSD-3-Clause; 2DFAN4 weights: see the face-alignment project"
    options_allowed = ("weights", "modules", "threads")

    def __init__(self, weights: str | None = None, modules: int = 4, threads: int = 1) -> None:
        import torch

        path = self._weights(weights)
        net = fan_module().FAN(int(modules))
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except Exception as exc:  # noqa: BLE001  (pickle / key errors: name the file)
            raise ConfigError(
                f"{path}: not a FAN state_dict with {modules} modules ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}); {WEIGHTS_HELP}"
            ) from None
        net.eval()
        self._net, self._torch, self._path = net, torch, path
        self._threads = int(threads)

    @staticmethod
    def _weights(weights: str | None) -> Path:
        if not weights:
            raise ConfigError(f"landmarker fan needs face.options.weights; {WEIGHTS_HELP}")
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ConfigError(f"FAN weights file {path} does not exist; {WEIGHTS_HELP}")
        return path

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        super().check_options(options)
        cls._weights(options.get("weights"))
        if int(options.get("modules", 4)) not in (1, 2, 3, 4):
            raise ConfigError(f"face.options.modules must be 1..4, got {options.get('modules')!r}")

    @classmethod
    def model_path(cls, options: dict[str, Any]):
        w = options.get("weights")
        return Path(w).expanduser() if w else None

    @classmethod
    def availability(cls, options: dict[str, Any]) -> tuple[bool, str]:
        if importlib.util.find_spec("torch") is None:
            return False, "torch is not installed"
        if package_file("face_alignment", "models", "fan.py") is None:
            return False, f"face-alignment is not installed: {INSTALL_HELP}"
        path = cls.model_path(options)
        if path is None:
            return False, "needs face.options.weights (a local FAN state_dict; nothing is downloaded)"
        if not path.is_file():
            return False, f"weights file {path} does not exist"
        return True, ""

    def landmarks(self, gray: np.ndarray, box: Box) -> np.ndarray:
        import cv2

        m = crop_matrix(box)
        img = cv2.warpAffine(np.ascontiguousarray(gray), m, (CROP, CROP), flags=cv2.INTER_LINEAR)
        x = np.repeat(img[None].astype(np.float32) / 255.0, 3, axis=0)[None]  # grey -> 3 channels
        torch = self._torch
        with torch.inference_mode():
            prev = torch.get_num_threads()
            torch.set_num_threads(self._threads)
            try:
                out = self._net(torch.from_numpy(x))
            finally:
                torch.set_num_threads(prev)
        hm = (out[-1] if isinstance(out, list | tuple) else out)[0].numpy()
        pts = decode_heatmaps(hm)
        inv = cv2.invertAffineTransform(m)
        return (pts @ inv[:, :2].T + inv[:, 2]).astype(np.float32)

    def model_files(self) -> dict[str, str]:
        return {self._path.name: cached_file_sha256(str(self._path))}
