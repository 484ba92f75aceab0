"""Where the plausibility thresholds come from: fit error and referee score of real faces and non-faces.

Real faces: the bundled astronaut photograph plus every image in ``--photos`` (e.g. insightface 2.1's
``t1.jpg`` and ``Tom_Hanks_54745.png``: ``pip download --no-deps insightface==2.1`` and unzip; they are
not shipped with mepipe), each also rotated 15-30 degrees, darkened, blurred and shrunk. Non-faces:
dlib HOG windows down to a score of -0.5 that do not overlap a real face (false hits), and fixed boxes
on blank, textured and photographed background regions. Each line: fit error (% IOD) and referee score
(dlib HOG on the candidate's canonical crop; -9: no window).

Usage: python benchmarks/face_plausibility.py [--photos DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from mepipe.face.backends import Box, get_detector, get_landmarker
from mepipe.face.detect import referee_score
from mepipe.face.fit import fit_error
from mepipe.synth.photo import astronaut

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def variants(rgb: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (image, (2, 3) map from the original's pixels to the variant's)."""
    h, w = rgb.shape[:2]
    out = {"as is": (rgb, IDENTITY)}
    for ang in (15, 30, -30):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), ang, 1.0)
        out[f"rotated {ang}"] = (cv2.warpAffine(rgb, m, (w, h), borderMode=cv2.BORDER_REFLECT), m)
    dark = np.clip(rgb * 0.2 + np.random.default_rng(0).normal(0, 2, rgb.shape), 0, 255).astype(np.uint8)
    out["dark x0.2"] = (dark, IDENTITY)
    out["blur 3px"] = (cv2.GaussianBlur(rgb, (0, 0), 3), IDENTITY)
    out["grey"] = (cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB), IDENTITY)
    out["small x0.6"] = (cv2.resize(rgb, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA), IDENTITY * 0.6)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=None)
    args = ap.parse_args()
    det = get_detector("dlib-hog", 1, {"threshold": -0.5})
    lmk = get_landmarker("dlib-68")
    photos = {"astronaut": astronaut()}
    if args.photos:
        for p in sorted(args.photos.iterdir()):
            img = cv2.imread(str(p))
            if img is not None:
                photos[p.name] = img[..., ::-1].copy()
    faces, false_hits = [], []
    for name, photo in photos.items():
        # the real faces: clear detections on the unmodified photo, as landmark sets (moved with each variant)
        g0 = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
        truth = [lmk.landmarks(g0, b).astype(np.float64) for b in det.detect(g0) if b.score >= 0.4]
        for vname, (rgb, m) in variants(photo).items():
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            moved = [t @ m[:, :2].T + m[:, 2] for t in truth]
            for b in det.detect(gray):
                pts = lmk.landmarks(gray, b)
                rec = (f"{name} {vname}", b.score, fit_error(pts), referee_score(gray, pts))
                centre = np.array([(b.left + b.right) / 2, (b.top + b.bottom) / 2])
                is_face = any(
                    np.linalg.norm(centre - t.mean(0)) < 0.3 * (t[:, 0].max() - t[:, 0].min()) for t in moved
                )
                (faces if is_face else false_hits).append(rec)
    regions = []
    rng = np.random.default_rng(1)
    textures = {
        "blank wall": np.full((300, 300), 120, np.uint8),
        "noise": rng.integers(0, 255, (300, 300)).astype(np.uint8),
        "smooth texture": cv2.GaussianBlur(rng.integers(0, 255, (300, 300)).astype(np.uint8), (0, 0), 6),
        "astronaut background (flag)": cv2.resize(
            cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY)[0:150, 0:150], (300, 300)
        ),
        "astronaut background (suit)": cv2.resize(
            cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY)[300:450, 300:450], (300, 300)
        ),
    }
    for name, g in textures.items():
        pts = lmk.landmarks(g, Box(75, 75, 225, 225))
        regions.append((name, float("nan"), fit_error(pts), referee_score(g, pts)))
    for title, recs in (
        ("real faces", faces),
        ("detector false hits", false_hits),
        ("regions without a face", regions),
    ):
        print(f"\n{title} ({len(recs)})")
        print(f"{'':<40}{'det score':>10}{'fit % IOD':>11}{'referee':>9}")
        for name, s, fe, ref in sorted(recs, key=lambda r: r[3]):
            print(f"{name[:40]:<40}{s:>10.2f}{fe:>11.1f}{ref:>9.2f}")
        if recs:
            print(
                f"{'range':<40}{'':>10}{min(r[2] for r in recs):>5.1f}-{max(r[2] for r in recs):<5.1f}"
                f"{min(r[3] for r in recs):>5.2f}..{max(r[3] for r in recs):.2f}"
            )


if __name__ == "__main__":
    main()
