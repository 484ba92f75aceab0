"""Stabilisation that keeps the expression: residual head motion and retained action, per align.mode.

Synthetic clips rendered in memory (mepipe.synth.memory) with a known head trajectory and a known
micro action (AU6+12 or AU1+2+4, micro amplitude: ~3 % IOD), the head's own photograph around it or
(``static wall``) a textured scene that does not move, so both sides are measured against the
generator's truth at every frame:

* residual head motion (% IOD, median and 95th percentile over frames and clips) and
* retained action (100 % = the action kept intact; target >= 90 %), both as
  :func:`mepipe.synth.memory.stabilisation_scores` defines them, for several seeds of clips.

Usage: python benchmarks/stabilisation.py [--clips 6] [--frames 48] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mepipe.config import parse_config
from mepipe.face.stage import ArraySink, align_clip
from mepipe.records import ClipRecord
from mepipe.synth.memory import ArrayFrameSource, on_static_background, render_clip, stabilisation_scores

MODES = ("clip", "per_frame", "register")
SETTINGS = (
    ("nearly still head", "micro", 1.0, False),
    ("moving head", "macro", 0.5, False),
    ("moving, static wall", "macro", 0.5, True),
)
"""(label, head-motion ranges, drift gain, head in front of a static wall instead of its moving photo)."""


AU_SETS = ((6, 12), (1, 2, 4))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=6, help="clips per seed and setting (AU sets alternate)")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    rows = []
    for label, motion, gain, wall in SETTINGS:
        specs = [(s * 1000 + k, AU_SETS[k % 2]) for s in args.seeds for k in range(args.clips)]
        clips = [
            render_clip(seed, args.frames, aus=aus, motion=motion, drift_gain=gain) for seed, aus in specs
        ]
        if wall:
            clips = [on_static_background(c, seed) for c, (seed, _) in zip(clips, specs, strict=True)]
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
                mo, ret = stabilisation_scores(c, res)
                motions.append(mo)
                kept.append(ret)
            allm = np.concatenate(motions)
            by_au = [
                np.mean([k for k, (_, aus) in zip(kept, specs, strict=True) if aus == s]) for s in AU_SETS
            ]
            rows.append((label, mode, np.median(allm), np.percentile(allm, 95), np.mean(kept), np.min(kept),
                         *by_au, 1000 * secs / frames))  # fmt: skip
    n = len(args.seeds) * args.clips
    print(f"{n} clips x {args.frames} frames per setting (seeds {args.seeds}), 640x480, crop 224, micro "
          "action AU6+12 / AU1+2+4 alternating")  # fmt: skip
    print(
        f"{'head':<21}{'align.mode':<12}{'residual head motion % IOD':>26}{'retained action':>40}{'ms/frame':>10}"
    )
    print(f"{'':<21}{'':<12}{'median':>13}{'p95':>13}{'mean':>10}{'min':>10}{'AU6+12':>10}{'AU1+2+4':>10}")
    for label, mode, med, p95, mean, lo, au6, au1, ms in rows:
        print(f"{label:<21}{mode:<12}{med:>13.2f}{p95:>13.2f}" + "".join(f"{100 * v:>9.1f}%" for v in (mean, lo, au6, au1))
              + f"{ms:>10.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
