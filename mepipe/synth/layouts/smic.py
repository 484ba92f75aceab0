"""SMIC-HS layout: ``HS/s1/micro/negative/s1_ne_01/image090823.bmp``; no spreadsheet.

* Frames: 640x480 RGB BMP (uncompressed), 100 fps, ``image{frame:06d}.bmp`` with absolute frame
  numbers of the long recording; each clip folder holds the onset..offset frames.
* The label is the folder (``negative``, ``positive``, ``surprise``); there is no annotation file and
  no apex (the ground truth has it). Clip folders are ``s{n}_{ne|po|sur}_{k:02d}``.
* Class -> AUs: positive 6+12; surprise 1+2+5; negative is one of 4+7, 4+9+10, 1+4+15 (SMIC's
  negative pools several emotions).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mepipe.synth.expressions import choose_aus
from mepipe.synth.layouts.base import (
    LAYOUTS,
    ClipPlan,
    FrameSink,
    ImageFolderSink,
    LayoutWriter,
    balanced_labels,
    key_frames,
)

FRAMES_DIR = "HS"
CLASSES: dict[str, tuple[tuple[int, ...], ...]] = {
    "negative": ((4, 7), (4, 9, 10), (1, 4, 15)),
    "positive": ((6, 12),),
    "surprise": ((1, 2, 5),),
}
ABBREV = {"negative": "ne", "positive": "po", "surprise": "sur"}


@LAYOUTS.register("smic")
class SmicWriter(LayoutWriter):
    """Writes a SMIC-HS-like dataset (micro-expressions, 100 fps, clips of 18-40 frames, BMP)."""

    name = "smic"
    classes = CLASSES
    fps = 100.0
    default_clip_frames = (18, 40)
    canvas = (640, 480)
    face_width_px = (170.0, 220.0)
    uses_jpeg = False
    roots = (FRAMES_DIR,)

    def subject_id(self, subject_index: int) -> str:
        return f"s{subject_index + 1}"

    def subject_folder(self, subject_index: int) -> str:
        return f"{FRAMES_DIR}/{self.subject_id(subject_index)}"

    def plan(self, n_subjects: int, clips_per_subject: int, rng: np.random.Generator) -> list[ClipPlan]:
        labels = balanced_labels(list(CLASSES), [], n_subjects * clips_per_subject, rng)
        plans = []
        for s in range(n_subjects):
            subject = self.subject_id(s)
            counts: dict[str, int] = {}
            start = int(rng.integers(1000, 60000))
            for c in range(clips_per_subject):
                label = labels[s * clips_per_subject + c]
                counts[label] = counts.get(label, 0) + 1
                clip = f"{subject}_{ABBREV[label]}_{counts[label]:02d}"
                n_frames = self.draw_length(rng)
                onset, apex, offset = key_frames(rng, start, n_frames)
                start = offset + int(rng.integers(500, 20000))
                aus = choose_aus(self.au_options(label), rng)
                folder = f"{FRAMES_DIR}/{subject}/micro/{label}/{clip}"
                plans.append(
                    ClipPlan(
                        subject_index=s,
                        clip_index=c,
                        label=label,
                        emotion=label,
                        aus=aus,
                        frame_numbers=tuple(range(onset, offset + 1)),
                        onset=onset,
                        apex=apex,
                        offset=offset,
                        native={
                            "subject": subject,
                            "filename": clip,
                            "clip_id": f"{subject}/{clip}",
                            "path": folder,
                            "frame_pattern": "image{frame:06d}.bmp",
                        },
                    )
                )
        return plans

    def open_clip(self, plan: ClipPlan) -> FrameSink:
        return ImageFolderSink(self.out, plan.native["path"], lambda n: f"image{n:06d}.bmp")

    def finish(self, plans: list[ClipPlan]) -> list[Path]:
        return []
