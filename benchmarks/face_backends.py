"""Per detector backend, on synthetic frames with distractors: right-face rate and ms per detection.

A CASME II-layout set is synthesised with the hard cases ``distractor_pattern`` (a poster with a drawn
face, larger than the subject's), ``distractor_photo`` (a printed photo of another face, larger) and
``none``. On each clip's onset frame every backend proposes boxes and mepipe's choice
(:func:`mepipe.face.detect.locate_face`: plausibility referee, never size) is compared with the old rule
(the largest box) in the same run. Right face: the chosen landmarks lie within 10 % IOD (median) of the
generator's true onset landmarks. ms/detection: the detector call alone, on the frame downscaled to
``--side`` pixels (the stage's ``face.detect_max_side``).

Usage: python benchmarks/face_backends.py [--subjects 3] [--clips 6] [--side 480] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from mepipe.config import FaceConfig
from mepipe.face.backends import get_detector, get_landmarker, list_backends
from mepipe.face.detect import FaceIssue, locate_face
from mepipe.face.geometry import inter_ocular
from mepipe.synth import read_ground_truth, synthesize

CASES = ("distractor_pattern", "distractor_photo", "none")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=3)
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--side", type=int, default=480)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    usable = [b.name for b in list_backends() if b.kind == "detector" and b.usable]
    lmk = get_landmarker("dlib-68")
    with tempfile.TemporaryDirectory() as tmp:
        data = synthesize(
            "casme2",
            Path(tmp),
            subjects=args.subjects,
            clips_per_subject=args.clips,
            seed=args.seed,
            conditions=CASES,
        )
        gt = read_ground_truth(data.ground_truth)
        frames = []
        for c in gt["clips"]:
            bgr = cv2.imread(str(Path(tmp) / c["path"] / f"img{c['onset']}.jpg"))
            frames.append((c["condition"]["name"], bgr[..., ::-1].copy(), np.asarray(c["landmarks_onset"])))
    print(f"{len(frames)} onset frames (640x480), detection on a {args.side}-px copy, landmarks dlib-68")
    print(
        f"{'detector':<10}{'case':<20}{'clips':>6}{'right face (mepipe)':>21}{'right face (largest box)':>26}{'ms/detection':>14}"
    )
    for name in usable:
        det = get_detector(name)
        cfg = FaceConfig(detector=name, detect_max_side=args.side, min_face=40)
        tally: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        ms: list[float] = []
        for case, rgb, truth in frames:
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            f = args.side / max(gray.shape)
            small = cv2.resize(gray, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
            t0 = time.perf_counter()
            boxes = det.detect(small)
            ms.append(1000 * (time.perf_counter() - t0))
            iod = inter_ocular(truth)

            def right(pts: np.ndarray) -> bool:
                return float(np.median(np.linalg.norm(pts - truth, axis=1))) < 0.1 * iod  # noqa: B023

            t = tally[case]
            t[0] += 1
            with contextlib.suppress(FaceIssue):
                t[1] += right(locate_face(gray, det, lmk, cfg).landmarks)
            if boxes:
                big = max(boxes, key=lambda b: b.area).scaled(1 / f)
                t[2] += right(lmk.landmarks(gray, big))
        for case in CASES:
            n, ok, big = tally[case]
            print(
                f"{name:<10}{case:<20}{n:>6}{ok:>14} ({100 * ok / n:3.0f}%){big:>18} ({100 * big / n:3.0f}%){np.median(ms):>14.1f}"
            )


if __name__ == "__main__":
    main()
