"""Face backends: scores, the listing, config validation, the FAN landmarker from a local checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mepipe.cli import app
from mepipe.config import parse_config
from mepipe.errors import ConfigError
from mepipe.face.backends import Box, get_detector, get_landmarker, list_backends
from mepipe.face.backends.fan import crop_matrix, decode_heatmaps
from mepipe.face.detect import referee_score
from mepipe.face.fit import fit_error
from mepipe.synth.photo import astronaut
from tests.build_fixtures import untrained_fan_weights
from tests.macro_fixtures import face_frame


def _cfg(face):
    return parse_config({"name": "t", "dataset": {"adapter": "folder"}, "face": face})


def test_detectors_return_scored_boxes_best_first():
    import cv2

    gray = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY)
    boxes = get_detector("dlib-hog").detect(gray)
    assert boxes and all(a.score >= b.score for a, b in zip(boxes, boxes[1:], strict=False))
    assert 1.0 < boxes[0].score < 3.0 and 70 < boxes[0].width < 110
    pytest.importorskip("yuface")
    yb = get_detector("yunet").detect(gray)
    assert 0.7 < yb[0].score <= 1.0 and yb[0].iou(boxes[0]) > 0.4


def test_referee_separates_a_face_from_a_face_shaped_landmark_set_on_a_wall():
    import cv2

    gray = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY)
    box = get_detector("dlib-hog").detect(gray)[0]
    lmk = get_landmarker("dlib-68")
    face = lmk.landmarks(gray, box)
    wall = np.full((300, 300), 120, np.uint8)
    wall_pts = lmk.landmarks(wall, Box(75, 75, 225, 225))
    assert fit_error(wall_pts) < 15  # the landmarker returns a face shape on a wall ...
    assert referee_score(gray, face) > 0.3 > referee_score(wall, wall_pts)  # ... the referee does not buy it


def test_listing_and_cli():
    names = {(b.kind, b.name): b for b in list_backends()}
    assert {("detector", "dlib-hog"), ("detector", "dlib-cnn"), ("detector", "yunet")} <= set(names)
    assert {("landmarker", "dlib-68"), ("landmarker", "fan")} <= set(names)
    lm = names[("landmarker", "dlib-68")]
    assert (
        lm.usable and lm.model_file.endswith("shape_predictor_68_face_landmarks.dat") and len(lm.sha256) == 64
    )
    assert "non-commercial" in lm.licence
    assert not names[("landmarker", "fan")].usable and "weights" in names[("landmarker", "fan")].why
    res = CliRunner().invoke(app, ["backends"])
    assert (
        res.exit_code == 0
        and "detector dlib-cnn: usable" in res.output
        and "mmod_human_face_detector" in res.output
    )


def test_backend_names_and_options_are_checked_when_the_config_is_parsed(tmp_path: Path):
    with pytest.raises(
        ConfigError, match=r"unknown face detector 'hogg'; valid names: dlib-cnn, dlib-hog, yunet"
    ):
        _cfg({"detector": "hogg"})
    with pytest.raises(ConfigError, match="landmarker fan needs face.options.weights"):
        _cfg({"landmarker": "fan"})
    with pytest.raises(ConfigError, match=r"FAN weights file .*missing.pth does not exist.*2DFAN4"):
        _cfg({"landmarker": "fan", "options": {"weights": str(tmp_path / "missing.pth")}})
    with pytest.raises(ConfigError, match=r"\['wieghts'\] is taken by neither"):
        _cfg({"options": {"wieghts": 1}})
    assert _cfg({"options": {"threshold": 0.0}}).face.options == {"threshold": 0.0}


def test_fan_heatmap_decoding_and_framing():
    box = Box(100, 50, 300, 250)
    m = crop_matrix(box)
    # the box centre, moved up by 12 % of its height, lands on the centre of the 256-px input
    cx, cy = 200, 150 - 0.12 * 200
    assert np.allclose(m[:, :2] @ [cx, cy] + m[:, 2], [128, 128])
    hm = np.zeros((68, 64, 64), np.float32)
    yy, xx = np.mgrid[0:64, 0:64]
    want = np.stack([np.linspace(10, 50, 68), np.linspace(20, 40, 68)], 1)
    for j, (x, y) in enumerate(want):
        hm[j] = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 2.0)
    pts = decode_heatmaps(hm)
    assert np.abs(pts - ((want + 0.5) * 4 - 0.5)).max() <= 4 * 0.75


def test_fan_landmarker_from_a_checkpoint_the_test_writes(tmp_path: Path):
    path = untrained_fan_weights(tmp_path / "fan1.pth")  # skips without torch / face-alignment
    import torch

    cfg = _cfg({"landmarker": "fan", "options": {"weights": str(path), "modules": 1}})
    lmk = get_landmarker("fan", cfg.face.options)
    gray = face_frame()[..., 0].copy()
    box = Box(60, 20, 260, 220)
    pts = lmk.landmarks(gray, box)
    assert pts.shape == (68, 2) and pts.dtype == np.float32 and np.all(np.isfinite(pts))
    side = 200 * (box.width + box.height) / 195
    assert np.all(np.abs(pts - [160, 96]) < side)  # inside the framed square
    assert lmk.model_files() == {"fan1.pth": __import__("mepipe.provenance").provenance.file_sha256(path)}
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(ConfigError, match="not a FAN state_dict"):
        get_landmarker("fan", {"weights": str(bad), "modules": 1})
    import cv2

    assert cv2.__version__.startswith("4.")  # the model code came without opencv-python
