"""Build throughput on video sources: mepipe's build vs a naive per-frame pipeline, same synthetic clips.

The data are DFEW-layout mp4 clips (640x480, 25 fps) written by ``mepipe.synth``. The naive baseline
is what typical DFER/MER preprocessing scripts do: decode every frame of the video, run the HOG
detector and the 68-point predictor on the full frame, fit the similarity to the template, warp, and
write the crop as a JPEG file. mepipe decodes each video once, in order, detects and landmarks once
per clip (on a downscaled copy), warps every frame with that one transform straight to the crop
size, estimates onset/apex/offset from facial motion, writes raw frames into HDF5 and the pair table.

Usage: python benchmarks/build_throughput_video.py [--subjects 4] [--clips 4] [--workers 2]
Prints frames/s for each (and mepipe without keyframe estimation, to show what the estimate costs),
per core, and the ratio. Timings vary on a shared machine; compare the ratios printed in one run.
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

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "demo-macro.yaml"


def naive_per_frame(clips, out_dir: Path, size: int, margin: float) -> int:
    """Decode + detect + landmark + align + JPEG-write on every frame, one process. Returns frames done."""
    import av

    det, lmk = get_detector("dlib-hog"), get_landmarker("dlib-68")
    cv2.setNumThreads(1)
    n = 0
    for clip in clips:
        dst = out_dir / clip.clip_id
        dst.mkdir(parents=True, exist_ok=True)
        with av.open(clip.source_path) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        for i, rgb in enumerate(decoded):
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            boxes = det.detect(gray)
            if not boxes:
                continue
            box = max(boxes, key=lambda b: b.area)
            m = crop_transform(lmk.landmarks(gray, box), size, margin)
            crop = cv2.warpAffine(
                rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
            cv2.imwrite(str(dst / f"{i:05d}.jpg"), crop[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=4)
    ap.add_argument("--clips", type=int, default=4, help="clips per subject")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    cfg = load_config(PIPELINE)
    uniform = load_config(PIPELINE, {"keyframes.mode": "uniform"})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize("dfew", tmp / "data", subjects=args.subjects, clips_per_subject=args.clips, seed=0)
        clips = get_adapter("dfew", tmp / "data").scan().clips
        get_detector("dlib-hog"), get_landmarker("dlib-68")  # model loading is not what we time
        t = time.perf_counter()
        naive_n = naive_per_frame(clips, tmp / "naive", cfg.align.crop_size, cfg.align.margin)
        naive_s = time.perf_counter() - t
        results = []
        for label, c in (("mepipe build-dataset", cfg), ("mepipe, keyframes: uniform", uniform)):
            for workers in sorted({1, args.workers}):
                t = time.perf_counter()
                s = build_dataset(
                    c, tmp / "data", tmp / f"mepipe-{c.keyframes.mode}-{workers}", workers=workers
                )
                results.append((label, workers, s.frames, time.perf_counter() - t))
    print(
        f"{len(clips)} mp4 clips (DFEW layout), {naive_n} frames of 640x480 -> "
        f"{cfg.align.crop_size}x{cfg.align.crop_size} crops"
    )
    print(
        f"{'pipeline':<40}{'cores':>6}{'frames':>8}{'seconds':>9}{'frames/s':>10}{'per core':>10}{'vs naive':>10}"
    )
    naive_fps = naive_n / naive_s
    print(
        f"{'naive per-frame (decode+detect+lmk+JPEG)':<40}{1:>6}{naive_n:>8}{naive_s:>9.2f}{naive_fps:>10.1f}"
        f"{naive_fps:>10.1f}{1.0:>9.1f}x"
    )
    for label, workers, n, sec in results:
        fps = n / sec
        print(
            f"{label:<40}{workers:>6}{n:>8}{sec:>9.2f}{fps:>10.1f}{fps / workers:>10.1f}{fps / naive_fps:>9.1f}x"
        )
    print(
        "(mepipe timings include adapter scan, worker start-up, keyframe estimation unless 'uniform', "
        "HDF5 writes, checksums, the manifest and the pair table)"
    )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
