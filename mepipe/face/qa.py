"""Quality of a built clip's face: the values and flags of the manifest's quality columns.

* ``face_score``: the detector's confidence for the chosen box (the backend's own scale).
* ``fit_error``: landmark residual of the reference face against the template, % IOD.
* ``stability``: residual head motion inside the *aligned* clip, % IOD: the rigid landmarks
  (:data:`mepipe.face.fit.RIGID_POINTS`) are found on ``quality.stability_frames`` stored crops spread
  over the clip plus the onset, apex and reference crops, and compared with the reference crop's; the
  value is the largest per-frame median displacement. It includes the landmarker's own jitter (~0.5-1 %
  IOD for dlib-68 on a still face).
* ``qa``: flags, ``;``-separated, empty when clean: ``low_face_score`` (score below
  ``quality.low_face_score``, default the backend's :attr:`~mepipe.face.backends.FaceDetector.low_score`),
  ``poor_fit`` (fit error above ``quality.poor_fit``), ``unstable`` (stability above
  ``quality.unstable``), ``several_faces`` (more than one plausible face on the reference frame),
  ``trimmed`` (frames without the face were left out), ``face_glitch`` (isolated frames where the face
  was not confirmed were kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mepipe.config import PipelineConfig
from mepipe.face.backends import DETECTORS, get_landmarker
from mepipe.face.detect import to_gray
from mepipe.face.fit import landmark_box, rigid_motion
from mepipe.face.geometry import crop_template
from mepipe.face.stage import CropSink, FaceResult

FLAGS = ("low_face_score", "poor_fit", "unstable", "several_faces", "trimmed", "face_glitch")


@dataclass(frozen=True)
class FaceQuality:
    """The quality values of one clip (see the module docstring); ``flags`` in :data:`FLAGS` order."""

    face_score: float
    fit_error: float
    stability: float
    flags: tuple[str, ...]

    @property
    def qa(self) -> str:
        return ";".join(self.flags)


def stability_positions(first: int, last: int, n: int, extra: tuple[int, ...] = ()) -> list[int]:
    """``n`` positions spread evenly over ``first..last`` (both included) plus ``extra``, sorted, unique."""
    spread = np.linspace(first, last, num=max(2, n)).round().astype(int).tolist()
    return sorted({*spread, *(p for p in extra if first <= p <= last)})


def measure_stability(sink: CropSink, positions: list[int], reference: int, cfg: PipelineConfig) -> float:
    """Largest rigid-point motion (% IOD) of the crops at ``positions`` relative to the reference crop."""
    lmk = get_landmarker(cfg.face.landmarker, cfg.face.options)
    box = landmark_box(crop_template(cfg.align.crop_size, cfg.align.margin))
    ref = lmk.landmarks(to_gray(sink.get(reference)), box)
    worst = 0.0
    for p in positions:
        if p != reference:
            worst = max(worst, rigid_motion(lmk.landmarks(to_gray(sink.get(p)), box), ref))
    return worst


def assess(
    result: FaceResult, sink: CropSink, cfg: PipelineConfig, keyframes: tuple[int, ...] = ()
) -> FaceQuality:
    """Quality values and flags of a clip after the face stage.

    Args:
        result: the stage's result; ``sink`` the crops it emitted.
        keyframes: source positions of the onset and apex (measured in addition to the spread frames).
    """
    q = cfg.quality
    positions = stability_positions(result.first, result.last, q.stability_frames, keyframes)
    stab = measure_stability(sink, positions, result.ref_pos, cfg)
    low = q.low_face_score if q.low_face_score is not None else DETECTORS.get(cfg.face.detector).low_score
    score = float(result.fit.box.score)
    flags = {
        "low_face_score": score < low,
        "poor_fit": result.fit.fit_error > q.poor_fit,
        "unstable": stab > q.unstable,
        "several_faces": result.fit.faces_found > 1,
        "trimmed": result.trimmed,
        "face_glitch": bool(result.glitches),
    }
    return FaceQuality(score, float(result.fit.fit_error), float(stab), tuple(f for f in FLAGS if flags[f]))
