"""Quality checks of a build against synthetic ground truth (``synth_ground_truth.json``).

Alignment consistency: a subject's face has the same shape in all of its clips (the generator only
moves the head), so after alignment its true onset landmarks must land at the same crop positions
in every clip, whatever the head pose was. The deviation is measured in units of the crop's
inter-ocular distance (IOD).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mepipe.face.geometry import apply_transform, inter_ocular
from mepipe.shards.format import CLIPS_GROUP
from mepipe.shards.manifest import read_manifest
from mepipe.shards.reader import open_shard


@dataclass(frozen=True)
class AlignmentReport:
    """``per_subject``: median deviation / IOD for each subject; ``median``: over all clips and
    landmarks; ``clips``: clips compared; ``iod_px``: mean crop IOD."""

    per_subject: dict[str, float]
    median: float
    clips: int
    iod_px: float


def alignment_consistency(build_dir: str | Path, ground_truth: str | Path) -> AlignmentReport:
    """Map each clip's true onset landmarks through its stored transform and measure, per subject,
    how far they fall from that subject's mean crop positions (median over landmarks and clips).

    Subjects with fewer than two built clips are skipped.
    """
    build_dir = Path(build_dir)
    gt = json.loads(Path(ground_truth).read_text())
    truth = {c["clip_id"]: np.asarray(c["landmarks_onset"], dtype=np.float64) for c in gt["clips"]}
    mapped: dict[str, list[np.ndarray]] = defaultdict(list)
    for r in read_manifest(build_dir):
        if r.status != "ok" or r.clip_id not in truth:
            continue
        with open_shard(build_dir / "shards" / r.shard) as f:
            m = f[CLIPS_GROUP][r.key]["transform"][()]
        m = m if m.ndim == 2 else m[r.onset_idx]
        mapped[r.subject].append(apply_transform(m, truth[r.clip_id]))
    per_subject: dict[str, float] = {}
    devs, iods = [], []
    for subject, pts in sorted(mapped.items()):
        if len(pts) < 2:
            continue
        stack = np.stack(pts)  # (clips, 68, 2)
        mean = stack.mean(0)
        iod = inter_ocular(mean)
        d = np.linalg.norm(stack - mean, axis=2) / iod
        per_subject[subject] = float(np.median(d))
        devs.append(d.ravel())
        iods.append(iod)
    if not devs:
        raise ValueError(f"{build_dir}: no subject has two built clips matching {ground_truth}")
    return AlignmentReport(
        per_subject,
        float(np.median(np.concatenate(devs))),
        sum(len(p) for p in mapped.values()),
        float(np.mean(iods)),
    )
