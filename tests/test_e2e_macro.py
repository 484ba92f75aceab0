"""End to end on the macro path: synth (DFEW layout, mp4) -> build (decord, estimated keyframes, pair
table) -> verify -> pairs and frames read back with plain csv + h5py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from mepipe.cli import app

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "demo-macro.yaml"

synth = pytest.importorskip(
    "mepipe.synth", reason="the synthetic data generator (mepipe.synth) is not available"
)
if "dfew" not in synth.LAYOUTS:
    pytest.skip("mepipe.synth has no 'dfew' layout yet", allow_module_level=True)


@pytest.fixture(scope="module")
def macro_build(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("e2e_macro")
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "synth",
            "--layout",
            "dfew",
            "--out",
            str(tmp / "data"),
            "--subjects",
            "2",
            "--clips-per-subject",
            "2",
            "--seed",
            "5",
        ],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        [
            "build-dataset",
            str(PIPELINE),
            "--source",
            str(tmp / "data"),
            "--out",
            str(tmp / "out"),
            "--set",
            "align.crop_size=96",
        ],
    )
    assert res.exit_code == 0, res.output
    return tmp


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_macro_clips_build_with_estimated_keyframes(macro_build: Path):
    rows = _csv(macro_build / "out" / "manifest.csv")
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows), [r["message"] for r in rows]
    truth = {
        c["clip_id"]: c
        for c in json.loads((macro_build / "data" / "synth_ground_truth.json").read_text())["clips"]
    }
    for r in rows:
        t = truth[r["clip_id"]]
        assert r["keyframe_source"] == "estimated" and float(r["fps"]) == pytest.approx(25.0)
        assert int(r["n_frames"]) == t["n_frames"]
        assert json.loads(r["extra"])  # fold membership from the split files
        if t["aus"]:  # a clip with an expression: the apex is found within 2 frames
            assert abs(int(r["apex"]) - t["apex"]) <= 2, (r["clip_id"], r["apex"], t["apex"])
    res = CliRunner().invoke(app, ["verify", str(macro_build / "out")])
    assert res.exit_code == 0 and "0 problem(s)" in res.output, res.output


def test_pairs_read_back_with_plain_h5py(macro_build: Path):
    out = macro_build / "out"
    pairs = _csv(out / "pairs.csv")
    rows = {r["key"]: r for r in _csv(out / "manifest.csv")}
    assert len(pairs) == 4 * 16
    files: dict[str, h5py.File] = {}
    try:
        for p in pairs:
            f = files.get(p["shard"]) or files.setdefault(
                p["shard"], h5py.File(out / "shards" / p["shard"], "r")
            )
            g = f["clips"][p["key"]]
            t, t2 = int(p["t_idx"]), int(p["t2_idx"])
            assert 0 <= t < t2 < g["frames"].shape[0] == int(rows[p["key"]]["n_frames"])
            numbers, times = g["frame_numbers"][()], g["timestamps_ms"][()]
            assert numbers[t2] - numbers[t] == int(p["delta_frames"]) and 1 <= int(p["delta_frames"]) <= 4
            assert times[t2] - times[t] == pytest.approx(float(p["delta_ms"]), abs=1e-3)
            a, b = g["frames"][t], g["frames"][t2]
            assert a.shape == b.shape == (96, 96, 3) and a.dtype == np.uint8
    finally:
        for f in files.values():
            f.close()
