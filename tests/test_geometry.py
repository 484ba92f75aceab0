import numpy as np
import pytest

from mepipe.face.geometry import (
    apply_transform,
    crop_template,
    crop_transform,
    estimate_similarity,
    inter_ocular,
    similarity_from_params,
    smooth_transforms,
    unit_template,
)


def _similarity(scale, angle_deg, tx, ty):
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def test_similarity_recovers_known_transform_from_noisy_landmarks():
    rng = np.random.default_rng(0)
    src = crop_template(224, 0.3) + np.array([200.0, 120.0])
    true = _similarity(0.83, 7.5, -31.0, 12.5)
    dst = apply_transform(true, src) + rng.normal(0, 0.5, src.shape)
    est = estimate_similarity(src, dst)
    # the fitted transform maps every landmark to within 0.5 px of where the true one maps it
    err = np.linalg.norm(apply_transform(est, src) - apply_transform(true, src), axis=1)
    assert err.max() < 0.5
    assert np.allclose(est[:, :2], true[:, :2], atol=0.005)


def test_similarity_has_no_reflection_and_rejects_bad_input():
    src = unit_template() * 100
    mirrored = src * np.array([-1.0, 1.0])
    est = estimate_similarity(src, mirrored)
    assert np.linalg.det(est[:, :2]) > 0
    with pytest.raises(ValueError, match="identical"):
        estimate_similarity(np.ones((5, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="shape"):
        estimate_similarity(np.ones((5, 2)), np.zeros((4, 2)))


def test_crop_template_is_centred_level_and_sized_by_margin():
    t = crop_template(224, 0.3)
    assert t.shape == (68, 2)
    width = t[:, 0].max() - t[:, 0].min()
    assert width == pytest.approx(224 / 1.6)
    assert (t[:, 0].max() + t[:, 0].min()) / 2 == pytest.approx(112)
    eyes_dy = t[42:48, 1].mean() - t[36:42, 1].mean()
    assert abs(eyes_dy) < 0.01  # template stored to 5 decimals
    assert inter_ocular(crop_template(112, 0.3)) == pytest.approx(inter_ocular(t) / 2)


def test_crop_transform_maps_landmarks_onto_template():
    pts = apply_transform(_similarity(2.3, -12, 300, 140), unit_template())
    m = crop_transform(pts, 128, 0.2)
    assert np.abs(apply_transform(m, pts) - crop_template(128, 0.2)).max() < 1e-6


def test_smoothing_keeps_constant_and_damps_jitter():
    base = _similarity(1.1, 3, 10, 20)
    const = np.stack([base] * 7)
    assert np.allclose(smooth_transforms(const, 5), const)
    rng = np.random.default_rng(1)
    jitter = np.stack(
        [similarity_from_params(np.array([0.0, 0.0, 10 + rng.normal(0, 2), 5.0])) for _ in range(50)]
    )
    sm = smooth_transforms(jitter, 9)
    assert sm[:, 0, 2].std() < jitter[:, 0, 2].std() / 2
