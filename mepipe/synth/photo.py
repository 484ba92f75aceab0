"""The real photograph the synthetic subjects (and the canonical template) are made from.

``data/astronaut.png`` is NASA's portrait of astronaut Eileen Collins (public domain), the same
512x512 RGB file scikit-image ships as ``skimage.data.astronaut()``. It is bundled so that mepipe
needs no scikit-image at run time.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

ASTRONAUT_FILE = Path(__file__).resolve().parent / "data" / "astronaut.png"


@cache
def _astronaut() -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(ASTRONAUT_FILE), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"{ASTRONAUT_FILE} is missing or unreadable; reinstall mepipe")
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    rgb.flags.writeable = False
    return rgb


def astronaut() -> np.ndarray:
    """The photograph as a fresh ``(512, 512, 3) uint8 RGB`` array (a copy: callers may modify it)."""
    return _astronaut().copy()
