"""The face stage drivers with fake frame sources (in memory) and fake detectors: late face, face leaving,
scene cut, isolated glitch, buffer spill, truncation, several faces, the sink contract."""

from __future__ import annotations

import numpy as np
import pytest

from mepipe.config import parse_config
from mepipe.face import stage as stage_mod
from mepipe.face.backends import Box, FaceDetector, get_detector
from mepipe.face.detect import FaceIssue
from mepipe.face.geometry import crop_template, inter_ocular
from mepipe.face.register import rigid_mask
from mepipe.face.stage import ArraySink, align_clip
from mepipe.records import ClipRecord
from mepipe.sources import FrameReadError, FrameSource
from mepipe.synth.conditions import empty_scene
from mepipe.synth.memory import ArrayFrameSource, on_static_background, render_clip, stabilisation_scores
from tests.macro_fixtures import face_frame

FACE = [face_frame(dx=0.3 * (k % 3)) for k in range(3)]
BLANK = face_frame(visible=False)
SCENE = empty_scene((320, 240), np.random.default_rng(5), textured=True)


class MemorySource(FrameSource):
    """Frames held in memory; ``random_access`` as asked; ``fail_at``: decoding raises there."""

    def __init__(self, frames, random_access=True, fail_at=None):
        self.frames, self.fail_at = frames, fail_at
        self.frame_numbers = list(range(len(frames)))
        self.fps, self.notes, self.reads = 25.0, [], []
        self.random_access = random_access  # type: ignore[misc]

    def read(self, i):
        if self.fail_at is not None and i >= self.fail_at:
            raise FrameReadError("corrupt_video", f"frame {i} cannot be decoded")
        self.reads.append(i)
        return self.frames[i].copy()


class RecordingSink(ArraySink):
    def __init__(self):
        super().__init__()
        self.order = []

    def add(self, position, crop):
        self.order.append(position)
        super().add(position, crop)


def frames(spec: str) -> list[np.ndarray]:
    """``F`` face, ``.`` blank, ``S`` another scene; e.g. ``"....FFFF"``."""
    return [{"F": FACE[k % 3], ".": BLANK, "S": SCENE}[c] for k, c in enumerate(spec)]


def cfg(**over):
    data = {
        "name": "t",
        "dataset": {"adapter": "folder"},
        "face": {"min_face": 40, "reference": "first", "check_every": 4, "search_frames": 30},
        "align": {"crop_size": 96},
    }
    for k, v in over.items():
        data[k] = {**data.get(k, {}), **v}
    return parse_config(data)


def run(spec, random_access=True, required=None, fail_at=None, **over):
    src = MemorySource(frames(spec), random_access, fail_at)
    clip = ClipRecord("folder", "s", "c", "images" if random_access else "video", "/x", fps=25.0)
    sink = RecordingSink()
    res = align_clip(src, clip, np.arange(len(spec)), cfg(**over), sink, required)
    assert sink.order == list(range(res.first, res.last + 1))  # contiguous, increasing, once each
    return res, sink


@pytest.mark.parametrize("random_access", [True, False])
def test_late_face_is_trimmed(random_access):
    res, sink = run("......" + "F" * 14, random_access)
    assert (res.ref_pos, res.first, res.last) == (6, 6, 19) and res.trimmed and len(sink) == 14


@pytest.mark.parametrize("random_access", [True, False])
def test_face_leaving_and_scene_cut_end_the_span_at_the_exact_frame(random_access):
    res, _ = run("F" * 13 + "." * 7, random_access)
    assert (res.first, res.last) == (0, 12) and res.trimmed
    res, _ = run("F" * 10 + "S" * 10, random_access)
    assert res.last == 9


def test_isolated_glitch_is_kept_and_noted():
    res, _ = run("F" * 8 + "." + "F" * 11)
    assert (res.first, res.last) == (0, 19) and res.glitches == [8] and not res.trimmed
    assert "isolated frame(s) 8" in res.notes[0]
    res, _ = run("F" * 8 + "." + "F" * 11, face={"lost_frames": 1})
    assert res.last == 7


def test_reference_after_the_annotated_onset_and_face_lost():
    with pytest.raises(FaceIssue) as err:
        run("...." + "F" * 10, required={"onset": 0, "apex": 6})
    assert err.value.reason == "face_lost" and "onset frame 0" in str(err.value)
    with pytest.raises(FaceIssue) as err:
        run("F" * 10 + "." * 6, required={"offset": 15})
    assert err.value.reason == "face_lost" and "0..9" in str(err.value)


def test_no_face_names_the_frames_searched():
    with pytest.raises(FaceIssue) as err:
        run("." * 12, face={"search_frames": 5})
    assert err.value.reason == "no_face" and "frames 0..5 (searched 6 frames)" in str(err.value)


def test_spilled_buffer_gives_the_same_crops():
    spec = "..." + "F" * 12 + "..."
    kept, s1 = run(spec, random_access=False)
    spilled, s2 = run(spec, random_access=False, video={"buffer_mb": 0})
    ra, s3 = run(spec, random_access=True)
    assert (kept.first, kept.last) == (spilled.first, spilled.last) == (ra.first, ra.last) == (3, 14)
    assert np.array_equal(s1.frames(), s2.frames()) and np.array_equal(s1.frames(), s3.frames())


def test_truncation_keeps_the_frames_before_the_error():
    res, sink = run("F" * 20, random_access=False, fail_at=15, video={"on_decode_error": "truncate"})
    assert (res.last, res.n_source) == (14, 15) and "truncated" in res.notes[0] and not res.trimmed
    with pytest.raises(FrameReadError):
        run("F" * 20, random_access=False, fail_at=15)


class FakeDetector(FaceDetector):
    """Returns fixed boxes (frame pixels), best score first, whatever the image."""

    name = "fake"

    def __init__(self, boxes):
        self.boxes = boxes

    def detect(self, gray):
        return sorted(self.boxes, key=lambda b: -b.score)


def test_several_candidates_choose_the_plausible_face_not_the_larger_or_higher_scored(monkeypatch):
    real = get_detector("dlib-hog").detect(face_frame())[0]
    decoy = Box(0, 0, 150, 150, score=2.5)  # larger, higher detector score, a corner of the background
    monkeypatch.setattr(stage_mod, "get_detector", lambda *a, **k: FakeDetector([decoy, real]))
    res, _ = run("F" * 6)
    assert res.fit.box == real and res.fit.faces_found == 1
    assert "2 candidates, 1 plausible" in res.note
    monkeypatch.setattr(stage_mod, "get_detector", lambda *a, **k: FakeDetector([decoy]))
    with pytest.raises(FaceIssue) as err:
        run("F" * 6, face={"search_frames": 2})
    assert err.value.reason == "implausible_face" and "frames 0..2" in str(err.value)
    monkeypatch.setattr(stage_mod, "get_detector", lambda *a, **k: FakeDetector([real, real.scaled(1.0)]))
    with pytest.raises(FaceIssue) as err:
        run("F" * 4, face={"multiple_faces": "fail"})
    assert err.value.reason == "several_faces"


@pytest.mark.parametrize("mode", ["per_frame", "register"])
def test_tracking_modes_emit_one_transform_per_kept_frame(mode):
    res, sink = run("..." + "F" * 12, align={"mode": mode, "smoothing": 5})
    assert res.transforms.shape == (12, 2, 3) and len(sink) == 12
    # a still face: every frame's transform is close to the reference frame's
    ref = res.reference_transform()
    assert np.abs(res.transforms[:, :, 2] - ref[:, 2]).max() < 2.0


@pytest.mark.parametrize("wall", [False, True])
def test_register_removes_head_motion_and_keeps_a_cheek_raising_micro_action(wall):
    # AU6+12 lifts both cheeks alike: fitted on the cheeks, the registration took that for head motion and
    # kept about half of the action; the rigid mask leaves the cheeks out. ``wall``: the head moves in
    # front of a static scene (its jaw line then borders pixels that do not move).
    clip = render_clip(3, 32, aus=(6, 12), motion="macro", drift_gain=0.5)
    if wall:
        clip = on_static_background(clip, 3)
        far = np.stack([f[:40, :40] for f in clip.frames])
        assert (far.max(0).astype(int) - far.min(0) <= 12).all()  # the corner is the wall: only noise
    rec = ClipRecord("folder", "s", "c", "images", "/mem", fps=200.0)
    scores = {}
    for mode in ("clip", "register"):
        over = {"face": {"min_face": 60, "check_every": 0}, "align": {"mode": mode, "crop_size": 224}}
        res = align_clip(ArrayFrameSource(clip.frames), rec, np.arange(32), cfg(**over), ArraySink())
        scores[mode] = stabilisation_scores(clip, res)
    (clip_motion, _), (reg_motion, reg_kept) = scores["clip"], scores["register"]
    assert np.median(reg_motion) < 0.5 * np.median(clip_motion)
    assert 0.8 < reg_kept < 1.2


def test_rigid_mask_leaves_out_every_expressive_region():
    pts = crop_template(224, 0.3) * 0.5  # the 112-px analysis image of RegisterAligner
    mask = rigid_mask(pts, 112)
    for i in (19, 24, 37, 44, 30, 48, 54, 62):  # brows, eyes, nose, mouth
        x, y = np.round(pts[i]).astype(int)
        assert not mask[y, x], i
    for a, b, c in ((1, 31, 41), (15, 35, 46)):  # cheek centres
        x, y = np.round(pts[[a, b, c]].mean(0)).astype(int)
        assert not mask[y, x]
    # what is left follows the jaw contour (and the forehead's top): the head's outline, not its action
    ys, xs = np.nonzero(mask)
    near = [np.hypot(xs - x, ys - y).min() < 0.1 * inter_ocular(pts) for x, y in pts[:17]]
    assert sum(near) >= 10 and len(xs) >= 50


def test_array_sink_contract():
    sink = ArraySink()
    crop = np.zeros((4, 4, 3), np.uint8)
    sink.add(3, crop)
    sink.add(4, crop + 1)
    assert sink.get(4)[0, 0, 0] == 1 and sink.frames().shape == (2, 4, 4, 3)
    with pytest.raises(ValueError, match="contiguous"):
        sink.add(6, crop)
    with pytest.raises(IndexError):
        sink.get(2)
