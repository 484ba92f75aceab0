"""Stabilisation that keeps the expression: residual head motion and retained action, per align.mode.

Synthetic clips rendered in memory (mepipe.synth.memory) with a known head trajectory and a known
micro action (AU6+12 or AU1+2+4, micro amplitude: ~3 % IOD), so both sides are measured against the
generator's truth at every frame:

* residual head motion: the expression-free landmarks of frame t (the head pose alone), mapped through
  the stored transform of frame t, against the reference (onset) frame's: median over the 68 points,
  in % of the crop's inter-ocular distance; median and 95th percentile over frames and clips;
* retained action: the landmark displacement apex - onset visible in the crops, projected on the true
  displacement (the apex expression with the head motion removed exactly), over the points the action
  moves (> 30 % of the largest move); 100 % = the action kept intact. Target: >= 90 %.

Usage: python benchmarks/stabilisation.py [--clips 6] [--frames 48] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mepipe.config import parse_config
from mepipe.face.geometry import apply_transform, inter_ocular
from mepipe.face.stage import ArraySink, align_clip
from mepipe.records import ClipRecord
from mepipe.synth.memory import ArrayFrameSource, render_clip

MODES = ("clip", "per_frame", "register")
SETTINGS = (("nearly still head", "micro", 1.0), ("moving head", "macro", 0.5))


def _ideal(m_ref: np.ndarray, neutral_ref: np.ndarray, neutral_t: np.ndarray) -> np.ndarray:
    """The transform of frame t that removes the head motion exactly (similarity from the truth)."""
    from mepipe.face.geometry import estimate_similarity

    return estimate_similarity(neutral_t, apply_transform(m_ref, neutral_ref))


def measure(clip, result) -> tuple[np.ndarray, float]:
    """(per-frame residual head motion % IOD, retained action fraction) of one aligned clip."""
    t_of = result.transforms
    n = result.n_kept

    def m(t: int) -> np.ndarray:
        return t_of if t_of.ndim == 2 else t_of[t - result.first]

    ref = result.ref_pos
    ref_pts = apply_transform(m(ref), clip.neutral[ref])
    iod = inter_ocular(ref_pts)
    motion = np.array(
        [
            100 * np.median(np.linalg.norm(apply_transform(m(t), clip.neutral[t]) - ref_pts, axis=1)) / iod
            for t in range(result.first, result.first + n)
        ]
    )
    a = clip.apex
    seen = apply_transform(m(a), clip.landmarks[a]) - apply_transform(m(ref), clip.landmarks[ref])
    ideal = _ideal(m(ref), clip.neutral[ref], clip.neutral[a])
    true = apply_transform(ideal, clip.landmarks[a]) - apply_transform(ideal, clip.neutral[a])
    size = np.linalg.norm(true, axis=1)
    sel = size > 0.3 * size.max()
    retained = float((seen[sel] * true[sel]).sum() / (true[sel] ** 2).sum())
    return motion, retained


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = []
    for label, motion, gain in SETTINGS:
        clips = [
            render_clip(
                args.seed * 1000 + k,
                args.frames,
                aus=(6, 12) if k % 2 == 0 else (1, 2, 4),
                motion=motion,
                drift_gain=gain,
            )
            for k in range(args.clips)
        ]
        for mode in MODES:
            cfg = parse_config(
                {
                    "name": "bench",
                    "dataset": {"adapter": "folder"},
                    "face": {"reference": "first", "min_face": 60, "check_every": 0},
                    "align": {"mode": mode, "crop_size": 224},
                }
            )
            motions, kept, secs, frames = [], [], 0.0, 0
            for c in clips:
                src = ArrayFrameSource(c.frames)
                rec = ClipRecord("folder", "s", "c", "images", "/mem", fps=200.0)
                t0 = time.perf_counter()
                res = align_clip(src, rec, np.arange(len(c.frames)), cfg, ArraySink())
                secs += time.perf_counter() - t0
                frames += res.n_kept
                mo, ret = measure(c, res)
                motions.append(mo)
                kept.append(ret)
            allm = np.concatenate(motions)
            rows.append(
                (
                    label,
                    mode,
                    np.median(allm),
                    np.percentile(allm, 95),
                    np.mean(kept),
                    np.min(kept),
                    1000 * secs / frames,
                )
            )
    print(
        f"{args.clips} clips x {args.frames} frames per setting, 640x480, crop 224, micro action (AU6+12 / AU1+2+4)"
    )
    print(
        f"{'head':<18}{'align.mode':<12}{'residual head motion % IOD':>30}{'retained action':>22}{'ms/frame':>10}"
    )
    print(f"{'':<18}{'':<12}{'median':>15}{'p95':>15}{'mean':>11}{'min':>11}")
    for label, mode, med, p95, mean, lo, ms in rows:
        print(
            f"{label:<18}{mode:<12}{med:>15.2f}{p95:>15.2f}{100 * mean:>10.1f}%{100 * lo:>10.1f}%{ms:>10.2f}"
        )


if __name__ == "__main__":
    main()
