"""CASME II layout: ``CASME2_RAW_selected/sub01/EP02_01f/img46.jpg`` + ``CASME2-coding-20140508.xlsx``.

* Frames: 640x480 RGB JPEG (quality 90), 200 fps, file number = absolute frame number; each clip
  folder holds exactly the onset..offset frames (as in ``CASME2_RAW_selected``).
* Coding file header (row 1): ``Subject | Filename | <blank> | OnsetFrame | ApexFrame | OffsetFrame |
  <blank> | Action Units | Estimated Emotion``; pandas names the blank columns ``Unnamed: 2`` and
  ``Unnamed: 6``. ``Subject`` is an int; single AUs are numeric cells (``12``), others strings
  (``4+9``, ``R12``, ``L14+17``).
* Quirk reproduced: about 1 row in 10 (at least one) has ApexFrame ``/``; its frames exist and the
  ground truth keeps the true apex.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from openpyxl import Workbook

from mepipe.synth.expressions import au_string, choose_aus
from mepipe.synth.layouts.base import (
    LAYOUTS,
    ClipPlan,
    FrameSink,
    ImageFolderSink,
    LayoutWriter,
    au_cell,
    balanced_labels,
    key_frames,
    save_workbook,
)

CODING_FILE = "CASME2-coding-20140508.xlsx"
FRAMES_DIR = "CASME2_RAW_selected"
HEADER = (
    "Subject",
    "Filename",
    None,
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    None,
    "Action Units",
    "Estimated Emotion",
)
CLASSES: dict[str, tuple[tuple[int, ...], ...]] = {
    "happiness": ((6, 12),),
    "disgust": ((4, 9, 10),),
    "repression": ((14, 17), (24,)),
    "surprise": ((1, 2, 5),),
    "others": ((7,),),
    "fear": ((1, 2, 4, 20),),
    "sadness": ((1, 4, 15),),
}
VARIED_CLASSES: dict[str, tuple[tuple[int, ...], ...]] = {
    # Modelled on the AU/emotion criteria of the CASME II paper (Yan et al. 2014, PLoS ONE 9(1): e86041):
    # happiness needs AU6 or AU12, disgust AU9, AU10 or AU4+7, repression AU15 and/or AU17 (AU14 and
    # AU24, lip tighteners, added here), surprise AU1+2 or part of it; "others" here is brow and lid
    # action (AU4, AU7), which disgust, fear and sadness share. Only AUs with a displacement model.
    "happiness": ((6, 12), (12,), (6,), (12, 24)),
    "disgust": ((9,), (10,), (4, 7), (4, 9), (9, 10)),
    "repression": ((14,), (15,), (17,), (15, 17), (14, 17), (24,)),
    "surprise": ((1, 2), (1, 2, 5), (2,), (1,), (5, 26)),
    "others": ((4,), (7,), (4, 7), (1, 4)),
    "fear": ((1, 2, 4), (20,), (4, 20)),
    "sadness": ((1, 4, 15), (15,), (1, 4)),
}
MAIN = ["happiness", "disgust", "repression", "surprise", "others"]
RARE = ["fear", "sadness"]


@LAYOUTS.register("casme2")
class Casme2Writer(LayoutWriter):
    """Writes a CASME II-like dataset (micro-expressions, 200 fps, clips of 40-70 frames)."""

    name = "casme2"
    classes = CLASSES
    varied_classes = VARIED_CLASSES
    fps = 200.0
    default_clip_frames = (40, 70)
    canvas = (640, 480)
    face_width_px = (190.0, 240.0)
    roots = (FRAMES_DIR, CODING_FILE)

    def subject_id(self, subject_index: int) -> int:
        return subject_index + 1

    def subject_folder(self, subject_index: int) -> str:
        return f"{FRAMES_DIR}/sub{subject_index + 1:02d}"

    def plan(self, n_subjects: int, clips_per_subject: int, rng: np.random.Generator) -> list[ClipPlan]:
        labels = balanced_labels(MAIN, RARE, n_subjects * clips_per_subject, rng)
        plans = []
        for s in range(n_subjects):
            subject = self.subject_id(s)
            episodes = rng.permutation(np.arange(1, 20))
            used: dict[int, int] = {}
            for c in range(clips_per_subject):
                label = labels[s * clips_per_subject + c]
                episode = int(episodes[c % len(episodes)])
                used[episode] = used.get(episode, 0) + 1
                filename = f"EP{episode:02d}_{used[episode]:02d}{'f' if rng.random() < 0.4 else ''}"
                n_frames = self.draw_length(rng)
                onset, apex, offset = key_frames(rng, int(rng.integers(30, 201)), n_frames)
                aus = choose_aus(self.au_options(label), rng, lateral_prob=0.25)
                folder = f"{FRAMES_DIR}/sub{subject:02d}/{filename}"
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
                            "filename": filename,
                            "clip_id": f"sub{subject:02d}/{filename}",
                            "path": folder,
                            "frame_pattern": "img{frame}.jpg",
                        },
                    )
                )
        n_slash = max(1, round(0.1 * len(plans)))
        for i in rng.choice(len(plans), size=min(n_slash, len(plans)), replace=False):
            plans[int(i)].written["apex"] = "/"
        return plans

    def open_clip(self, plan: ClipPlan) -> FrameSink:
        return ImageFolderSink(self.out, plan.native["path"], lambda n: f"img{n}.jpg")

    def finish(self, plans: list[ClipPlan]) -> list[Path]:
        wb = Workbook()
        ws = wb.active
        ws.title = "Sheet1"
        ws.append(list(HEADER))
        for p in sorted(plans, key=lambda p: (p.native["subject"], p.native["filename"])):
            ws.append(
                [
                    p.native["subject"],
                    p.native["filename"],
                    None,
                    p.onset,
                    p.written.get("apex", p.apex),
                    p.offset,
                    None,
                    au_cell(au_string(p.aus)),
                    p.label,
                ]
            )
        path = self.out / CODING_FILE
        save_workbook(wb, path)
        return [path]
