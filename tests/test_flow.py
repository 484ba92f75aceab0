"""Optical flow and strain: known motions give known fields; normalisations; pair specs."""

import numpy as np
import pytest

from mepipe.errors import ConfigError
from mepipe.flow import (
    FLOW_BACKENDS,
    compute_flow,
    flow_channels,
    flow_sample,
    frame_pairs,
    normalise,
    optical_strain,
    resize_channels,
    tvl1_available,
)


def _texture(size=96, seed=0) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (size // 4, size // 4)).astype(np.float32)
    img = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    img = cv2.GaussianBlur(img, (0, 0), 1.5)
    return np.clip(img, 0, 255).astype(np.uint8)


def _shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    import cv2

    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, img.shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


@pytest.mark.parametrize("backend", ["dis", "farneback"])
def test_a_known_translation_is_recovered(backend):
    a = _texture()
    b = _shift(a, 2.0, -1.0)  # content moves right by 2 and up by 1
    flow = compute_flow(a, b, backend=backend)
    inner = flow[16:-16, 16:-16]
    assert flow.shape == (96, 96, 2) and flow.dtype == np.float32
    assert np.median(inner[..., 0]) == pytest.approx(2.0, abs=0.25)
    assert np.median(inner[..., 1]) == pytest.approx(-1.0, abs=0.25)


def test_flow_is_computed_at_the_requested_size_on_rgb_frames():
    g = _texture(128)
    a = np.repeat(g[..., None], 3, axis=2)
    b = np.repeat(_shift(g, 4.0, 0.0)[..., None], 3, axis=2)
    flow = compute_flow(a, b, size=64)  # half size: a 4 px shift becomes 2 px
    assert flow.shape == (64, 64, 2)
    assert np.median(flow[12:-12, 12:-12, 0]) == pytest.approx(2.0, abs=0.3)


def test_strain_of_known_fields():
    yy, xx = np.mgrid[0:20, 0:20].astype(np.float32)
    translation = np.stack([np.full_like(xx, 3.0), np.full_like(xx, -2.0)], -1)
    assert np.allclose(optical_strain(translation), 0.0)
    stretch = np.stack([0.1 * xx, np.zeros_like(xx)], -1)  # ux = 0.1
    assert np.allclose(optical_strain(stretch), 0.1, atol=1e-6)
    shear = np.stack([0.2 * yy, np.zeros_like(xx)], -1)  # uy = 0.2 -> sqrt(0.5 * 0.04)
    assert np.allclose(optical_strain(shear), np.sqrt(0.5) * 0.2, atol=1e-6)
    rotation = np.stack([-0.05 * yy, 0.05 * xx], -1)  # uy = -vx: a rigid rotation has no strain
    assert np.allclose(optical_strain(rotation), 0.0, atol=1e-6)


def test_channels_resize_and_units():
    yy, xx = np.mgrid[0:56, 0:56].astype(np.float32)
    flow = np.stack([np.full_like(xx, 4.0), 0.1 * xx], -1)
    x = flow_channels(flow)
    assert x.shape == (56, 56, 4)
    assert np.allclose(x[..., 2], np.hypot(4.0, 0.1 * xx))
    small = resize_channels(x, ("u", "v", "magnitude", "strain"), 28)
    assert small.shape == (28, 28, 4)
    assert np.allclose(small[..., 0], 2.0)  # pixels of the half-size grid
    # v = 0.1 x has vx = 0.1: strain sqrt(0.5) * 0.1, dimensionless, so unchanged by the resize
    assert np.allclose(small[4:-4, 4:-4, 3], np.sqrt(0.5) * 0.1, atol=1e-4)
    with pytest.raises(ConfigError, match="unknown channel"):
        flow_channels(flow, ("u", "w"))


def test_normalisations_record_what_they_did():
    x = np.zeros((4, 4, 2), np.float32)
    x[..., 0] = np.arange(16).reshape(4, 4)
    x[..., 1] = 7.0  # constant channel
    mm, rec = normalise(x, "minmax")
    assert mm[..., 0].min() == 0.0 and mm[..., 0].max() == 1.0 and np.all(mm[..., 1] == 0.0)
    assert rec == {"mode": "minmax", "min": [0.0, 7.0], "max": [15.0, 7.0]}
    fx, rec = normalise(x, "fixed", scale=10.0)
    assert fx.max() == 1.0 and fx[0, 1, 0] == pytest.approx(0.1) and rec["scale"] == 10.0
    same, rec = normalise(x, "none")
    assert np.array_equal(same, x) and rec == {"mode": "none"}
    with pytest.raises(ConfigError, match="scale"):
        normalise(x, "fixed")
    with pytest.raises(ConfigError, match="use one of"):
        normalise(x, "zscore")


def test_pair_specs():
    assert frame_pairs("onset_apex", 2, 6, 9, 12) == [("onset_apex", 2, 6)]
    assert frame_pairs("apex_offset", 2, 6, 9, 12) == [("apex_offset", 6, 9)]
    assert frame_pairs("onset_every", 2, 6, 9, 12, every=3) == [
        ("onset_to_5", 2, 5),
        ("onset_to_8", 2, 8),
        ("onset_to_9", 2, 9),
    ]
    assert frame_pairs("onset_apex", 3, 3, 5, 6) == []  # apex == onset: no pair
    with pytest.raises(ValueError, match="do not hold"):
        frame_pairs("onset_apex", 5, 3, 9, 12)
    with pytest.raises(ConfigError, match="unknown pair spec"):
        frame_pairs("onset_mid", 0, 1, 2, 3)


def test_tvl1_is_a_clear_error_without_opencv_contrib():
    assert "tvl1" in FLOW_BACKENDS
    a = _texture(32)
    if tvl1_available():
        assert compute_flow(a, a, backend="tvl1").shape == (32, 32, 2)
    else:
        with pytest.raises(ConfigError, match="opencv-contrib-python-headless"):
            compute_flow(a, a, backend="tvl1")


def test_flow_sample_is_one_ststnet_input():
    a = _texture(112, seed=3)
    b = _shift(a, 1.5, 0.0)
    x, rec = flow_sample(a, b, channels=("u", "v", "strain"), output_size=28, normalisation="minmax")
    assert x.shape == (28, 28, 3) and x.min() >= 0.0 and x.max() <= 1.0
    assert rec["mode"] == "minmax" and len(rec["min"]) == 3
