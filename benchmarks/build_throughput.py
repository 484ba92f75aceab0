"""Build throughput: mepipe's build vs a naive per-frame pipeline, on the same synthetic clips.

The naive baseline is what typical MER scripts do: for *every* frame, decode the JPEG, run the HOG
detector and the 68-point predictor on the full 640x480 frame, fit the similarity to the template,
warp, and write the crop as a JPEG file. mepipe detects and landmarks once per clip (on a downscaled
copy), warps every frame with that one transform straight to the crop size, and writes raw frames
into HDF5.

Usage: python benchmarks/build_throughput.py [--subjects 4] [--clips 10] [--workers 2]
Prints frames/s for each, per core, and the ratio. Timings vary on a shared machine; compare the
ratio printed in one run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from mepipe.build import build_dataset
from mepipe.config import load_config
from mepipe.datasets import get_adapter
from mepipe.face.backends import get_detector, get_landmarker
from mepipe.face.geometry import crop_transform
from mepipe.synth import synthesize

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "demo-micro.yaml"


def naive_per_frame(clips, out_dir: Path, size: int, margin: float) -> int:
    """Detect + landmark + align + JPEG-write on every frame, one process. Returns frames done."""
    det, lmk = get_detector("dlib-hog"), get_landmarker("dlib-68")
    cv2.setNumThreads(1)
    n = 0
    for clip in clips:
        dst = out_dir / clip.clip_id
        dst.mkdir(parents=True, exist_ok=True)
        for name in clip.frame_files:
            bgr = cv2.imread(str(Path(clip.source_path) / name))
            gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            boxes = det.detect(gray)
            if not boxes:
                continue
            box = max(boxes, key=lambda b: b.area)
            m = crop_transform(lmk.landmarks(gray, box), size, margin)
            crop = cv2.warpAffine(
                bgr, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
            cv2.imwrite(str(dst / name), crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=4)
    ap.add_argument("--clips", type=int, default=10, help="clips per subject")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    cfg = load_config(PIPELINE)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize("casme2", tmp / "data", subjects=args.subjects, clips_per_subject=args.clips, seed=0)
        clips = get_adapter("casme2", tmp / "data").scan().clips
        frames = sum(len(c.frame_files) for c in clips)
        get_detector("dlib-hog"), get_landmarker("dlib-68")  # model loading is not what we time
        t = time.perf_counter()
        naive_n = naive_per_frame(clips, tmp / "naive", cfg.align.crop_size, cfg.align.margin)
        naive_s = time.perf_counter() - t
        results = []
        runs = [(1, "")] + ([(args.workers, "")] if args.workers > 1 else [])
        for workers, note in runs:
            t = time.perf_counter()
            s = build_dataset(cfg, tmp / "data", tmp / f"mepipe{workers}", workers=workers, force=True)
            results.append((workers, note, s.frames, time.perf_counter() - t))
    print(
        f"{len(clips)} clips, {frames} frames of 640x480 -> {cfg.align.crop_size}x{cfg.align.crop_size} crops"
    )
    print(
        f"{'pipeline':<34}{'cores':>6}{'frames':>8}{'seconds':>9}{'frames/s':>10}{'per core':>10}{'vs naive':>10}"
    )
    naive_fps = naive_n / naive_s
    print(
        f"{'naive per-frame (detect+lmk+JPEG)':<34}{1:>6}{naive_n:>8}{naive_s:>9.2f}{naive_fps:>10.1f}{naive_fps:>10.1f}{1.0:>9.1f}x"
    )
    for workers, note, n, sec in results:
        fps = n / sec
        name = "mepipe build-dataset" + note
        print(
            f"{name:<34}{workers:>6}{n:>8}{sec:>9.2f}{fps:>10.1f}{fps / workers:>10.1f}{fps / naive_fps:>9.1f}x"
        )
    print("mepipe timings include the adapter scan, HDF5 writes, checksums and the manifest; with several")
    print("workers also starting the worker processes (imports + loading the 100 MB landmark model, about")
    print(
        "1.2 CPU-seconds each, once per build). benchmarks/build_scaling.py measures scaling on longer sets."
    )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
