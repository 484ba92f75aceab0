"""CK+, as distributed: ``cohn-kanade-images/S005/001/S005_001_00000001.png`` + ``Emotion/`` label files.

Quirks handled here (``shared/reference/datasets.md`` section 3):

* One folder per sequence, ``<subject>/<sequence>``; frames are numbered from 1 in the file names and
  sorted numerically. Most frames are 8-bit grey (replicated to RGB when read), some colour.
* The label of a sequence is ``Emotion/S005/001/S005_001_000000NN_emotion.txt``, one float
  (``   3.0000000e+00``): 0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness,
  7 surprise. It is stored as the integer string (``"3"``) in ``emotion_raw``; ``NN`` is the frame the
  label refers to, the peak. Only 327 of the 593 sequences have one; the others are kept with an empty
  label (useful for pair pre-training) unless ``labelled_only``.
* Sequences run neutral -> peak, so the keyframes follow from the data's design, not from an
  annotator: onset = first frame, apex = offset = the labelled frame (the last frame when unlabelled).
  ``keyframe_source`` says ``sequence`` for this.
* Subject ids are kept as written (``S005``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mepipe.datasets.base import (
    DatasetAdapter,
    FrameLister,
    ScanResult,
    register_adapter,
    validate_image_clip,
)
from mepipe.datasets.macro import frames_record
from mepipe.errors import ConfigError
from mepipe.records import ClipIssue

IMAGE_DIRS = (
    "cohn-kanade-images",
    "CK+/cohn-kanade-images",
    "extended-cohn-kanade-images/cohn-kanade-images",
)
EMOTION_DIRS = ("Emotion", "Emotion_labels/Emotion", "CK+/Emotion")


def read_emotion(path: Path) -> tuple[str, int]:
    """``S005_001_00000011_emotion.txt`` -> (``"3"``, 11): the code as an integer string, and the frame.

    Raises:
        ValueError: naming the file when the content is not one whole number 0..7.
    """
    text = path.read_text().strip()
    try:
        value = float(text.split()[0])
    except (ValueError, IndexError):
        raise ValueError(f"{path}: expected one number 0..7, found {text[:40]!r}") from None
    if not value.is_integer() or not 0 <= value <= 7:
        raise ValueError(f"{path}: emotion code {value} is not a whole number 0..7")
    frame = int(path.name.split("_")[2])
    return str(int(value)), frame


@register_adapter("ckplus")
class CkPlusAdapter(DatasetAdapter):
    """Extended Cohn-Kanade (CK+): posed sequences, neutral -> peak, 123 subjects.

    Options:
        images_dir: the frame tree under the root (default the first existing of ``cohn-kanade-images`` ...).
        emotion_dir: the label tree (default ``Emotion``).
        labelled_only: keep only the sequences with an emotion file (default ``false``).
        fps: frame rate (default 30).
    """

    expression_type = "macro"
    option_names = ("images_dir", "emotion_dir", "labelled_only", "fps")

    def scan(self) -> ScanResult:
        images = self._pick("images_dir", IMAGE_DIRS, required=True)
        assert images is not None
        emotions = self._pick("emotion_dir", EMOTION_DIRS, required=False)
        fps = float(self.options.get("fps", 30.0))
        labelled_only = bool(self.options.get("labelled_only", False))
        out = self.new_result(images)
        lister = FrameLister(out.roots)
        for subj_dir in sorted(p for p in images.iterdir() if p.is_dir()):
            for seq_dir in sorted(p for p in subj_dir.iterdir() if p.is_dir()):
                subject, seq = subj_dir.name, seq_dir.name
                cid = f"{subject}/{seq}"
                label, peak, label_file = "", None, None
                files = sorted((emotions / subject / seq).glob("*_emotion.txt")) if emotions else []
                if files:
                    label_file = files[0]
                    try:
                        label, peak = read_emotion(label_file)
                    except ValueError as exc:
                        out.fail(
                            ClipIssue(
                                self.name, cid, "bad_value", f"{exc}; fix the file", subject, str(label_file)
                            )
                        )
                        continue
                if labelled_only and label_file is None:
                    continue
                extra = {"labelled": "1" if label_file else "0"}
                clip, issue = frames_record(
                    self.name, cid, subject, seq_dir, lister=lister, emotion_raw=label, fps=fps, extra=extra
                )
                if issue is not None:
                    out.add(clip, issue)
                    continue
                first, last = clip.frame_numbers[0], clip.frame_numbers[-1]
                apex = peak if peak is not None else last
                clip = replace(clip, onset=first, apex=apex, offset=apex, keyframe_source="sequence")
                out.add(clip, validate_image_clip(clip))
        return out

    def _pick(self, option: str, defaults: tuple[str, ...], *, required: bool) -> Path | None:
        wanted = self.options.get(option)
        for name in [wanted] if wanted else defaults:
            if (self.root / str(name)).is_dir():
                return self.root / str(name)
        if required or wanted:
            raise ConfigError(
                f"ckplus: no {option.replace('_dir', '')} folder under {self.root}; expected one of "
                f"{[wanted] if wanted else list(defaults)} (dataset.options.{option})"
            )
        return None
