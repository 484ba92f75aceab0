"""Heat-map localisation against the generator's ground truth (mepipe.train.localisation)."""

from __future__ import annotations

import numpy as np
import pytest

from mepipe.face.geometry import apply_transform, crop_template, crop_transform, inter_ocular
from mepipe.synth.expressions import AUSpec, au_fields
from mepipe.train.localisation import (
    au_region_mask,
    difference_map,
    disc_mask,
    onset_transform,
    score_map,
    to_distribution,
)


def _source_face() -> np.ndarray:
    """Template landmarks placed in a 640x480 'frame': scaled, rotated by 12 degrees, shifted."""
    pts = crop_template(200, 0.3)
    a = np.deg2rad(12.0)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (pts - 100.0) @ rot.T * 1.4 + np.array([330.0, 250.0])


def _truth(aus: tuple[AUSpec, ...], points: np.ndarray) -> dict:
    """A ground-truth clip entry as mepipe.synth writes it (anchors from the AU table)."""
    anchors = []
    for spec, fld in zip(aus, au_fields(aus, points, 3.0), strict=True):
        for (x, y), s in zip(fld.centers, fld.sigmas, strict=True):
            anchors.append({"au": spec.code(), "x": float(x), "y": float(y), "sigma_px": float(s)})
    return {"landmarks_onset": points.tolist(), "au_anchors_onset": anchors}


def test_masks_land_on_the_au_anchors() -> None:
    src = _source_face()
    m = crop_transform(src, 224, 0.3)  # what the build stores as `transform`
    crop_pts = apply_transform(m, src)
    for aus, inside, outside in (
        ((AUSpec(12),), (48, 54), (19, 24, 37, 44, 33, 8)),  # lip corners, both sides
        ((AUSpec(12, "R"),), (48,), (54, 19, 24)),  # one-sided: only the image-left corner
        ((AUSpec(1), AUSpec(2)), (17, 19, 21, 22, 24, 26), (48, 54, 57, 33)),  # the brows
    ):
        mask, iod = au_region_mask(_truth(aus, src), m, 224)
        assert iod == pytest.approx(inter_ocular(crop_pts), rel=1e-9)
        for i in inside:
            x, y = np.round(crop_pts[i]).astype(int)
            assert mask[y, x], f"{aus}: landmark {i} should be in the region"
        for i in outside:
            x, y = np.round(crop_pts[i]).astype(int)
            assert not mask[y, x], f"{aus}: landmark {i} should be outside the region"
    # the same regions on the model input grid (a pure resize of the crop)
    big, _ = au_region_mask(_truth((AUSpec(12),), src), m, 224)
    small, iod_small = au_region_mask(_truth((AUSpec(12),), src), m, 112, scale=0.5)
    assert iod_small == pytest.approx(inter_ocular(crop_pts) / 2)
    assert abs(small.mean() - big.mean()) < 0.01
    # radius: at least 0.2 IOD around every anchor
    empty, _ = au_region_mask({"landmarks_onset": src.tolist(), "au_anchors_onset": []}, m, 224)
    assert not empty.any()


def test_region_radius_is_at_least_the_stated_iod_share() -> None:
    src = _source_face()
    m = crop_transform(src, 224, 0.3)
    truth = {
        "landmarks_onset": src.tolist(),
        "au_anchors_onset": [{"au": "5", "x": 330, "y": 250, "sigma_px": 1}],
    }
    mask, iod = au_region_mask(truth, m, 224, radius_iod=0.25)
    cx, cy = apply_transform(m, np.array([[330.0, 250.0]]))[0]
    assert mask.sum() == pytest.approx(np.pi * (0.25 * iod) ** 2, rel=0.05)
    assert mask[int(round(cy)), int(round(cx))]


def test_concentrated_map_scores_mass_one_and_hits() -> None:
    mask = disc_mask(np.array([[40.0, 72.0]]), np.array([24.0]), 112)
    # a 7 x 7 heat map (16 px cells) hot in the cell whose centre is (40, 72): bilinear support <= 16 px
    heat = np.zeros((7, 7))
    heat[4, 2] = 1.0  # centre ((2 + 0.5) * 16 - 0.5, (4 + 0.5) * 16 - 0.5) = (39.5, 71.5)
    s = score_map(heat, mask, tolerance=8.0)
    assert s["mass"] == pytest.approx(1.0, abs=1e-9) and s["hit"] == 1.0
    assert s["chance_mass"] == pytest.approx(mask.mean())
    # the same map elsewhere: no mass, a miss
    far = np.zeros((7, 7))
    far[0, 6] = 1.0
    s2 = score_map(far, mask, tolerance=8.0)
    assert s2["mass"] < 1e-9 and s2["hit"] == 0.0


def test_uniform_map_scores_the_chance_share() -> None:
    mask = disc_mask(np.array([[30.0, 30.0], [80.0, 70.0]]), np.array([10.0, 14.0]), 112)
    for heat in (np.ones((7, 7)), np.full((112, 112), 3.0), np.zeros((7, 7))):
        s = score_map(heat, mask, tolerance=8.0)
        assert s["mass"] == pytest.approx(s["chance_mass"], abs=1e-9)
        assert s["chance_mass"] == pytest.approx(mask.mean())
    assert mask.mean() < s["chance_hit"] < 1.0  # the tolerance widens the target


def test_pointing_tolerance() -> None:
    mask = disc_mask(np.array([[56.0, 56.0]]), np.array([10.0]), 112)
    near = np.zeros((112, 112))
    near[56, 56 + 15] = 1.0  # 5 px outside the disc
    assert score_map(near, mask, tolerance=6.0)["hit"] == 1.0
    assert score_map(near, mask, tolerance=4.0)["hit"] == 0.0


def test_distribution_sums_to_one_and_clips_negatives() -> None:
    p = to_distribution(np.array([[-1.0, 2.0], [0.0, 1.0]]), 16)
    assert p.shape == (16, 16) and p.min() >= 0 and p.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="heat map"):
        to_distribution(np.zeros((2, 2, 2)), 8)


def test_difference_map_and_onset_transform() -> None:
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[1, 2] = (30, 60, 90)
    d = difference_map(a, b)
    assert d.shape == (4, 4) and d[1, 2] == 60 and d.sum() == 60
    per_frame = np.stack([np.eye(2, 3) * k for k in (1, 2, 3)])
    assert np.array_equal(onset_transform(per_frame, [10, 12, 14], 12), per_frame[1])
    assert np.array_equal(onset_transform(per_frame[0], [10, 12, 14], 99), per_frame[0])  # one per clip
    with pytest.raises(ValueError, match="not among"):
        onset_transform(per_frame, [10, 12, 14], 11)
