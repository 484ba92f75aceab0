"""Face backends with options (``face.options``) reach every place the build loads them: the workers'
face stage and the shard attributes (``backends``, ``model_files``)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py

from mepipe.build import build_dataset
from mepipe.config import load_config
from mepipe.provenance import file_sha256
from mepipe.shards.manifest import read_manifest
from tests.build_fixtures import make_synth, untrained_fan_weights


def test_fan_landmarker_with_its_weights_option_builds(tmp_path_factory, tmp_path: Path):
    weights = untrained_fan_weights(tmp_path / "fan1.pth")
    data = make_synth(tmp_path_factory.mktemp("fan") / "casme2", subjects=1, clips=2)
    over = {
        "align.crop_size": 64,
        "face.landmarker": "fan",
        "face.options": {"weights": str(weights), "modules": 1},
    }
    out = tmp_path / "out"
    build_dataset(load_config("demo-micro", over), data, out)
    rows = read_manifest(out)
    assert len(rows) == 2 and all(r.reason != "error" and r.reason != "worker_crashed" for r in rows)
    info = json.loads((out / "build-info.json").read_text())
    assert info["backends"] == {"detector": "dlib-hog", "landmarker": "fan"}
    assert info["model_files"]["fan1.pth"] == file_sha256(weights)
    for shard in (out / "shards").glob("*.h5"):
        with h5py.File(shard, "r") as f:
            assert json.loads(f.attrs["model_files"])["fan1.pth"] == file_sha256(weights)
