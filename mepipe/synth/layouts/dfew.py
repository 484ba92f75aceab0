"""DFEW layout (macro-expression videos): ``Clip/original/00001.mp4`` + ``EmoLabel_DataSplit``.

* Videos: 640x480 mp4 (``cv2.VideoWriter`` fourcc ``mp4v``), 25 fps, 1-3 s. Frame numbers in the
  ground truth are 0-based indices of decoded frames.
* Splits: ``EmoLabel_DataSplit/train(single-labeled)/set_{1..5}.csv`` and
  ``test(single-labeled)/set_{1..5}.csv`` with header ``video_name,label``; ``video_name`` is the clip
  number (``1`` for ``00001.mp4``), ``label`` is 1-based: 1 happy, 2 sad, 3 neutral, 4 angry,
  5 surprise, 6 disgust, 7 fear. Folds split by subject: subject ``k`` (0-based) is in the test set of
  fold ``k % 5 + 1`` (with fewer than 5 subjects some test sets are empty).
* The expression occupies part of the clip: onset in the first quarter, offset near the end.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from mepipe.synth.expressions import choose_aus
from mepipe.synth.layouts.base import LAYOUTS, ClipPlan, FrameSink, LayoutWriter, VideoSink, balanced_labels

CLIP_DIR = "Clip/original"
SPLIT_DIR = "EmoLabel_DataSplit"
LABELS = {1: "happy", 2: "sad", 3: "neutral", 4: "angry", 5: "surprise", 6: "disgust", 7: "fear"}
CLASSES: dict[str, tuple[tuple[int, ...], ...]] = {
    "happy": ((6, 12),),
    "sad": ((1, 4, 15),),
    "neutral": ((),),
    "angry": ((4, 7, 24),),
    "surprise": ((1, 2, 5, 26),),
    "disgust": ((4, 9, 10),),
    "fear": ((1, 2, 4, 5, 20),),
}
VARIED_CLASSES: dict[str, tuple[tuple[int, ...], ...]] = {
    # The CLASSES prototypes plus partial forms of them, so that the macro set shows every AU of the
    # micro tables (casme2 VARIED_CLASSES) alone and in combination.
    "happy": ((6, 12), (12,), (6, 12, 26)),
    "sad": ((1, 4, 15), (15, 17), (1, 4), (15,)),
    "neutral": ((),),
    "angry": ((4, 7, 24), (4, 7), (4, 5, 7), (4, 24), (17, 24)),
    "surprise": ((1, 2, 5, 26), (1, 2, 26), (1, 2, 5), (1, 2)),
    "disgust": ((4, 9, 10), (9, 10), (9,), (10, 17), (14,)),
    "fear": ((1, 2, 4, 5, 20), (1, 4, 20), (1, 2, 4, 26), (20,)),
}
N_FOLDS = 5


@LAYOUTS.register("dfew")
class DfewWriter(LayoutWriter):
    """Writes a DFEW-like dataset (macro-expression mp4 clips, 25 fps, 1-3 s)."""

    name = "dfew"
    classes = CLASSES
    varied_classes = VARIED_CLASSES
    fps = 25.0
    default_clip_frames = (25, 75)
    canvas = (640, 480)
    face_width_px = (150.0, 240.0)
    default_amplitude = "macro"
    uses_jpeg = False
    frame_convention = "0-based indices of decoded video frames"
    roots = ("Clip", SPLIT_DIR)

    def subject_id(self, subject_index: int) -> str:
        return (
            f"p{subject_index + 1:03d}"  # DFEW has no subject ids; this one exists only in the ground truth
        )

    def plan(self, n_subjects: int, clips_per_subject: int, rng: np.random.Generator) -> list[ClipPlan]:
        labels = balanced_labels(list(CLASSES), [], n_subjects * clips_per_subject, rng)
        number = {name: k for k, name in LABELS.items()}
        plans = []
        for s in range(n_subjects):
            for c in range(clips_per_subject):
                index = s * clips_per_subject + c
                emotion = labels[index]
                n_frames = self.draw_length(rng)
                onset = int(rng.integers(1, max(2, n_frames // 4)))
                offset = n_frames - 1 - int(rng.integers(0, max(1, n_frames // 6)))
                apex = onset + int(round(float(rng.uniform(0.35, 0.6)) * (offset - onset)))
                video = f"{index + 1:05d}"
                plans.append(
                    ClipPlan(
                        subject_index=s,
                        clip_index=c,
                        label=str(number[emotion]),
                        emotion=emotion,
                        aus=choose_aus(self.au_options(emotion), rng),
                        frame_numbers=tuple(range(n_frames)),
                        onset=onset,
                        apex=apex,
                        offset=offset,
                        native={
                            "subject": self.subject_id(s),
                            "video_name": index + 1,
                            "clip_id": video,
                            "path": f"{CLIP_DIR}/{video}.mp4",
                            "fold": s % N_FOLDS + 1,
                        },
                    )
                )
        return plans

    def open_clip(self, plan: ClipPlan) -> FrameSink:
        return VideoSink(self.out, plan.native["path"], self.fps, self.canvas)

    def finish(self, plans: list[ClipPlan]) -> list[Path]:
        written = []
        for split in ("train", "test"):
            folder = self.out / SPLIT_DIR / f"{split}(single-labeled)"
            folder.mkdir(parents=True, exist_ok=True)
            for fold in range(1, N_FOLDS + 1):
                rows = [p for p in plans if (p.native["fold"] == fold) == (split == "test")]
                path = folder / f"set_{fold}.csv"
                with path.open("w", newline="") as fh:
                    w = csv.writer(fh, lineterminator="\n")
                    w.writerow(["video_name", "label"])
                    w.writerows([p.native["video_name"], p.label] for p in rows)
                written.append(path)
        return written
