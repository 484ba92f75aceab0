"""Bytes per stored frame: raw uint8 vs JPEG inside HDF5 (quality 95/90/75), at 224 and 112 px.

Synthesises a DFEW-layout set (mp4, macro expressions) with :func:`mepipe.synth.synthesize`, builds
it once per crop size with raw frames, then re-stores exactly those aligned frames through the shard
writer with each encoding (the same ``write_clip`` the build uses) and reports, per option: shard
bytes per frame (whole HDF5 file, metadata included), frame-data bytes per frame, the ratio to raw,
PSNR of the decoded frames against raw, and decode time per frame with
:func:`mepipe.shards.read_frames`. Frame subsampling (``storage.frame_step`` k, ``max_frames`` N)
divides the per-clip bytes by about k (or T/N) on top of this.

Usage: python benchmarks/storage.py [--subjects 3] [--clips 4] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np

from mepipe.build import build_dataset
from mepipe.config import load_config
from mepipe.shards import read_frames, read_manifest
from mepipe.shards.format import CLIPS_GROUP, ClipOutput, encode_jpeg, jpeg_digest
from mepipe.shards.writer import ShardWriter
from mepipe.synth import synthesize

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "demo-macro.yaml"
OPTIONS = (("raw", 0), ("jpeg", 95), ("jpeg", 90), ("jpeg", 75))


def stored_clips(build: Path) -> list[ClipOutput]:
    """Re-create the ClipOutputs of a raw build from its shards (frames + the metadata the writer needs)."""
    from mepipe.records import ClipRecord

    outs = []
    for r in read_manifest(build):
        if r.status != "ok":
            continue
        with h5py.File(build / "shards" / r.shard, "r") as f:
            g = f[CLIPS_GROUP][r.key]
            frames = read_frames(g)
            clip = ClipRecord(r.dataset, r.subject, r.clip_id, "video", r.source_path, fps=r.fps)
            outs.append(
                ClipOutput(
                    clip=clip,
                    frames=frames,
                    frame_numbers=g["frame_numbers"][()],
                    transforms=g["transform"][()],
                    landmarks_ref=g["landmarks_ref"][()],
                    reference_idx=int(g.attrs["reference_idx"]),
                    face_box=g.attrs["face_box"],
                    faces_found=int(g.attrs["faces_found"]),
                    face_note="",
                    onset_idx=r.onset_idx,
                    apex_idx=r.apex_idx,
                    offset_idx=r.offset_idx,
                    keyframe_source=r.keyframe_source,
                    source_files=[],
                    source_sha256=[],
                    frames_sha256=r.frames_sha256,
                    timestamps_ms=g["timestamps_ms"][()],
                )
            )
    return outs


def store(outs: list[ClipOutput], folder: Path, encoding: str, quality: int) -> tuple[int, int]:
    """Write the clips with one encoding; returns (shard file bytes, frame-data bytes)."""
    w = ShardWriter(
        folder, {"pipeline": "storage-bench", "frame_encoding": encoding}, max_clips=10**6, max_bytes=10**12
    )
    data = 0
    for o in outs:
        if encoding == "jpeg":
            assert o.frames is not None
            blobs = encode_jpeg(o.frames, quality)
            o = replace(
                o,
                frames=None,
                frames_jpeg=blobs,
                frame_shape=tuple(o.frames.shape[1:]),
                jpeg_quality=quality,
                frames_sha256=jpeg_digest(blobs),
            )
        data += o.stored_nbytes
        w.add(o)
    w.close()
    return sum(p.stat().st_size for p in (folder / "shards").glob("*.h5")), data


def decode_check(folder: Path, reference: dict[str, np.ndarray]) -> tuple[float, float]:
    """(PSNR in dB against the raw frames, decode ms per frame) over every stored clip."""
    se, n, t = 0.0, 0, 0.0
    for shard in sorted((folder / "shards").glob("*.h5")):
        with h5py.File(shard, "r") as f:
            for key, ref in reference.items():
                g = f[CLIPS_GROUP].get(key)
                if g is None:
                    continue
                t0 = time.perf_counter()
                got = read_frames(g)
                t += time.perf_counter() - t0
                se += float(((got.astype(np.float64) - ref) ** 2).sum())
                n += ref.size
    mse = se / max(n, 1)
    frames = sum(len(v) for v in reference.values())
    return (float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)), 1000 * t / frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=3)
    ap.add_argument("--clips", type=int, default=4, help="clips per subject")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize("dfew", tmp / "data", subjects=args.subjects, clips_per_subject=args.clips, seed=args.seed)
        for size in (224, 112):
            cfg = load_config(
                PIPELINE, {"align.crop_size": size, "keyframes.mode": "uniform", "pairs.write": False}
            )
            build_dataset(cfg, tmp / "data", tmp / f"raw{size}", workers=2)
            outs = stored_clips(tmp / f"raw{size}")
            frames = sum(o.n_frames for o in outs)
            reference = {o.clip.key: o.frames.astype(np.float64) for o in outs if o.frames is not None}
            raw_bytes = None
            for encoding, q in OPTIONS:
                folder = tmp / f"{encoding}{q}-{size}"
                file_bytes, data_bytes = store(outs, folder, encoding, q)
                raw_bytes = raw_bytes or data_bytes
                psnr, ms = decode_check(folder, reference)
                label = "raw uint8" if encoding == "raw" else f"JPEG q={q}"
                rows.append(
                    (
                        size,
                        label,
                        frames,
                        file_bytes / frames,
                        data_bytes / frames,
                        raw_bytes / data_bytes,
                        psnr,
                        ms,
                    )
                )
    print(f"{args.subjects * args.clips} synthetic DFEW clips (seed {args.seed}); bytes per stored frame")
    print(
        f"{'crop':>5}  {'encoding':<11}{'frames':>7}{'file B/frame':>14}{'data B/frame':>14}{'x smaller':>10}"
        f"{'PSNR dB':>9}{'decode ms':>11}"
    )
    for size, label, n, fb, db, ratio, psnr, ms in rows:
        print(f"{size:>5}  {label:<11}{n:>7}{fb:>14,.0f}{db:>14,.0f}{ratio:>10.1f}{psnr:>9.1f}{ms:>11.3f}")


if __name__ == "__main__":
    main()
