"""Regenerate ``template68.json``: ``python -m mepipe.face.template``.

The template is the dlib 68-point landmarks of the astronaut photograph (a real, public-domain
photograph bundled with mepipe, :mod:`mepipe.synth.photo`), normalised by :func:`mepipe.face.geometry.normalise_template`.
"""

from __future__ import annotations

import json

import numpy as np

from mepipe.face.backends import get_detector, get_landmarker
from mepipe.face.geometry import TEMPLATE_FILE, normalise_template


def build_template() -> np.ndarray:
    """Detect and landmark the astronaut photo; return the normalised ``(68, 2)`` template."""
    import cv2

    from mepipe.synth.photo import astronaut

    gray = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY)
    boxes = get_detector("dlib-hog").detect(gray)
    if len(boxes) != 1:
        raise RuntimeError(f"expected one face in the astronaut photo, found {len(boxes)}")
    return normalise_template(get_landmarker("dlib-68").landmarks(gray, boxes[0]))


def main() -> None:
    pts = build_template()
    doc = {
        "description": (
            "mepipe canonical 68-point template: dlib 68-point landmarks of skimage.data.astronaut(), "
            "eyes level, landmark box centred on 0 and scaled to width 1. "
            "Regenerate with: python -m mepipe.face.template"
        ),
        "points": [[round(float(x), 5), round(float(y), 5)] for x, y in pts],
    }
    TEMPLATE_FILE.write_text(json.dumps(doc, indent=0) + "\n")
    print(f"wrote {TEMPLATE_FILE}")


if __name__ == "__main__":
    main()
