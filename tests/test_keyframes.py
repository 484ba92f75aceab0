"""Keyframe estimation (motion energy -> onset/apex/offset), keyframe resolution modes, subsampling."""

from __future__ import annotations

import numpy as np
import pytest

from mepipe.config import KeyframeConfig
from mepipe.face.align import clip_transform, locate_face, to_gray, warp_to_crop
from mepipe.face.backends import get_detector, get_landmarker
from mepipe.face.geometry import apply_transform
from mepipe.keyframes import estimate_from_curve, keep_indices, motion_energy, resolve_keyframes, smooth_curve
from mepipe.records import ClipRecord
from tests.macro_fixtures import expression_clip, raised_cosine


@pytest.mark.parametrize(
    ("fps", "n", "keys", "tol"), [(30.0, 60, (12, 24, 44), 1), (200.0, 200, (30, 95, 170), 3)]
)
def test_apex_of_noisy_bumps(fps, n, keys, tol):
    errors, onsets = [], []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        curve = 0.2 + raised_cosine(n, *keys) + rng.normal(0, 0.06, n)
        est = estimate_from_curve(curve, fps, KeyframeConfig())
        errors.append(abs(est.apex - keys[1]))
        onsets.append(est.onset - keys[0])
        assert 0 <= est.onset <= est.apex <= est.offset < n
        assert est.snr > 5
    assert np.median(errors) <= tol
    # the onset is where the rise leaves the noise floor: a little after the true start at most
    assert -2 <= np.median(onsets) <= 0.25 * (keys[1] - keys[0])


def test_apex_search_window_and_flat_curve():
    curve = raised_cosine(50, 5, 10, 15) + 0.6 * raised_cosine(50, 25, 35, 45)
    assert estimate_from_curve(curve, 30.0).apex == 10
    assert estimate_from_curve(curve, 30.0, lo=20, hi=49).apex == 35
    flat = estimate_from_curve(np.full(30, 0.5), 30.0)
    assert 0 <= flat.onset <= flat.apex <= flat.offset <= 29 and flat.snr == 0.0


def test_smoothing_is_in_milliseconds():
    spike = np.zeros(101)
    spike[50] = 1.0
    at30, at200 = smooth_curve(spike, 30.0, 30.0), smooth_curve(spike, 200.0, 30.0)
    assert at30[50] > 0.4 and at200[50] < 0.1  # sigma 0.9 frame vs 6 frames
    assert at200.sum() == pytest.approx(1.0)


def _aligned(frames: list[np.ndarray], size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    from mepipe.config import AlignConfig, FaceConfig

    fit = locate_face(
        to_gray(frames[0]), get_detector("dlib-hog"), get_landmarker("dlib-68"), FaceConfig(min_face=40)
    )
    m = clip_transform(fit, AlignConfig(crop_size=size))
    crops = np.stack([warp_to_crop(f, m, size) for f in frames])
    return crops, apply_transform(m, fit.landmarks)


def test_motion_energy_sees_the_expression_not_the_head_drift():
    crops, pts = _aligned(expression_clip(30, 6, 15, 25, drift=4.0))
    energy = motion_energy(crops, pts)
    est = estimate_from_curve(energy, 25.0)
    assert abs(est.apex - 15) <= 1 and est.onset <= 9 and est.offset >= 21
    drift_only, pts2 = _aligned(expression_clip(30, 40, 41, 42, drift=4.0))  # no smile inside the clip
    e2 = motion_energy(drift_only, pts2)
    assert e2.max() < 0.25 * energy.max()


def _clip(**kw) -> ClipRecord:
    base = dict(
        dataset="d",
        subject="s",
        clip_id="c",
        source_kind="images",
        source_path="/x",
        frame_numbers=tuple(range(100, 130)),
        fps=30.0,
    )
    return ClipRecord(**{**base, **kw})


def test_resolve_modes_and_sources():
    numbers = np.arange(100, 130)
    crops, pts = _aligned(expression_clip(30, 6, 15, 25))
    full = _clip(onset=102, apex=110, offset=125)
    assert resolve_keyframes(full, numbers) == resolve_keyframes(full, numbers, frames=crops, crop_points=pts)
    kf = resolve_keyframes(full, numbers)
    assert (kf.onset_idx, kf.apex_idx, kf.offset_idx, kf.source) == (2, 10, 25, "annotated")
    ck = resolve_keyframes(_clip(onset=100, apex=129, offset=129, keyframe_source="sequence"), numbers)
    assert ck.source == "sequence" and ck.apex_idx == 29
    uni = resolve_keyframes(full, numbers, cfg=KeyframeConfig(mode="uniform"))
    assert (uni.onset_idx, uni.apex_idx, uni.offset_idx, uni.source) == (0, 14, 29, "uniform")
    no_apex = _clip(onset=100, offset=129, keyframe_source="apex_missing")
    kf = resolve_keyframes(no_apex, numbers, frames=crops, crop_points=pts)
    assert kf.source == "onset=annotated,apex=estimated,offset=annotated" and abs(kf.apex_idx - 15) <= 1
    assert kf.curve is not None and kf.curve.shape == (30,)
    # without pixels the old fallback (midpoint) is kept and said so
    assert resolve_keyframes(no_apex, numbers).source == "apex=midpoint"
    est = resolve_keyframes(full, numbers, frames=crops, crop_points=pts, cfg=KeyframeConfig(mode="estimate"))
    assert est.source == "estimated" and abs(est.apex_idx - 15) <= 1 and est.onset_idx <= 9


def test_keep_indices_keeps_keyframes():
    assert keep_indices(10, step=3, always=(4,)).tolist() == [0, 3, 4, 6, 9]
    assert keep_indices(10, step=3, max_frames=3, always=(4,)).tolist() == [0, 4, 9]
    assert keep_indices(5).tolist() == [0, 1, 2, 3, 4]
    k = keep_indices(200, max_frames=16, always=(7, 93, 150, 7))
    assert len(k) == 16 and {7, 93, 150} <= set(k.tolist()) and np.all(np.diff(k) > 0)
    assert keep_indices(3, max_frames=2, always=(0, 1, 2)).tolist() == [0, 1, 2]  # keyframes beat the cap
