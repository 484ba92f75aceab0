"""Alignment consistency on the synthetic set: the same subject's true onset landmarks, mapped
through mepipe's per-clip transform, should land at the same crop positions in every clip although
each clip has a different head pose. Target: median deviation <= 2% of the inter-ocular distance.

Usage: python benchmarks/alignment_consistency.py [--subjects 4] [--clips 6] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from mepipe.build import build_dataset
from mepipe.config import load_config
from mepipe.quality import alignment_consistency
from mepipe.synth import synthesize

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "demo-micro.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=4)
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = load_config(PIPELINE)
    with tempfile.TemporaryDirectory() as tmp:
        data = synthesize(
            "casme2", Path(tmp) / "data", subjects=args.subjects, clips_per_subject=args.clips, seed=args.seed
        )
        build_dataset(cfg, data.out, Path(tmp) / "out", workers=2)
        rep = alignment_consistency(Path(tmp) / "out", data.ground_truth)
        # baseline: no alignment at all (the true landmarks in raw frame pixels, per subject)
        gt = json.loads(data.ground_truth.read_text())
        raw = {}
        for c in gt["clips"]:
            raw.setdefault(str(c["subject"]), []).append(np.asarray(c["landmarks_onset"]))
        base = []
        for pts in raw.values():
            s = np.stack(pts)
            mean = s.mean(0)
            iod = np.linalg.norm(mean[36:42].mean(0) - mean[42:48].mean(0))
            base.append(np.linalg.norm(s - mean, axis=2).ravel() / iod)
    print(
        f"{rep.clips} clips, {len(rep.per_subject)} subjects, crop {cfg.align.crop_size}px, crop IOD {rep.iod_px:.1f}px"
    )
    print(f"{'subject':<10}{'median deviation / IOD':>24}")
    for s, v in rep.per_subject.items():
        print(f"{s:<10}{100 * v:>23.2f}%")
    print(f"{'all':<10}{100 * rep.median:>23.2f}%   (target <= 2%)")
    print(
        f"{'no align':<10}{100 * float(np.median(np.concatenate(base))):>23.2f}%   (raw frame positions, for comparison)"
    )


if __name__ == "__main__":
    main()
