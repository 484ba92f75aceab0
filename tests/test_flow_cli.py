"""`mepipe flow OUT` and `mepipe export OUT` from the command line, on a real (synthetic) build."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mepipe.build import build_dataset
from mepipe.config import load_config
from mepipe.errors import ConfigError
from mepipe.export import export_build
from mepipe.flow import tvl1_available
from mepipe.flow_stage import FLOW_INFO_NAME, flow_config_for
from mepipe.shards.manifest import read_manifest
from mepipe.shards.verify import verify_build
from mepipe.synth import synthesize


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("flowcli")
    data = synthesize("casme2", tmp / "data", subjects=2, clips_per_subject=3, seed=4)
    cfg = load_config("demo-micro", {"align.crop_size": 96, "shards.max_clips": 4, "flow.size": 48})
    build_dataset(cfg, data.out, tmp / "out")
    return tmp / "out"


@pytest.fixture
def build(built, tmp_path) -> Path:
    shutil.copytree(built, tmp_path / "b")
    return tmp_path / "b"


def _run(*args: str):
    return CliRunner().invoke(__import__("mepipe.cli", fromlist=["app"]).app, list(args))


def _ok(build: Path):
    return [r for r in read_manifest(build) if r.status == "ok"]


def test_flow_command_uses_the_recorded_section_and_the_options_win(build):
    assert flow_config_for(build).size == 48  # from OUT/pipeline.resolved.yaml, not the default 112
    r = _run("flow", str(build), "--backend", "farneback", "--pairs", "onset_apex,apex_offset")
    assert r.exit_code == 0, r.output
    info = json.loads((build / FLOW_INFO_NAME).read_text())
    assert info["settings"]["backend"] == "farneback" and info["settings"]["size"] == 48
    assert info["settings"]["pairs"] == ["onset_apex", "apex_offset"]
    assert verify_build(build).ok
    row = next(r for r in _ok(build) if r.offset_idx > r.apex_idx)
    with h5py.File(build / "shards" / row.shard, "r") as f:
        fg = f["clips"][row.key]["flow"]
        assert sorted(fg) == ["apex_offset", "onset_apex"] and fg["onset_apex"].shape == (48, 48, 4)
        assert fg["onset_apex"].attrs["backend"] == "farneback"
    again = _run("flow", str(build), "--backend", "farneback", "--pairs", "onset_apex,apex_offset")
    assert again.exit_code == 0 and "0 shard(s) rewritten" in again.output


def test_flow_command_refusals_write_nothing(build, tmp_path):
    before = {p.name: p.read_bytes() for p in (build / "shards").glob("*.h5")}
    bad = _run("flow", str(build), "--normalisation", "fixed")  # no --scale
    assert bad.exit_code == 2 and "flow.scale" in bad.output
    bad = _run("flow", str(build), "--channels", "u,w")
    assert bad.exit_code == 2 and "channels" in bad.output
    if not tvl1_available():  # checked before any shard is copied
        bad = _run("flow", str(build), "--backend", "tvl1")
        assert bad.exit_code == 2 and "opencv-contrib-python-headless" in bad.output
    assert {p.name: p.read_bytes() for p in (build / "shards").glob("*.h5")} == before
    assert not list((build / "shards").glob("*.flowtmp")) and not (build / FLOW_INFO_NAME).exists()
    text = (build / "manifest.csv").read_text().splitlines()
    cols = text[0].split(",")
    cells = next(csv.reader([text[1]]))
    cells[cols.index("status")] = "pending"
    with open(build / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerow(cells)
    unfinished = _run("flow", str(build))
    assert unfinished.exit_code == 1 and "unfinished build" in unfinished.output
    missing = _run("flow", str(tmp_path / "nowhere"))
    assert missing.exit_code == 1 and "--out folder of `mepipe build-dataset`" in missing.output


def test_flow_config_reads_a_build_without_a_flow_section(build):
    resolved = build / "pipeline.resolved.yaml"
    data = yaml.safe_load(resolved.read_text())
    data.pop("flow")
    resolved.write_text(yaml.safe_dump(data))
    assert flow_config_for(build, {"every": 2, "backend": None}).size == 112  # defaults; None = not given
    with pytest.raises(ConfigError, match="size"):
        flow_config_for(build, {"size": 4})


def test_export_command_and_stored_flow_give_the_same_ststnet_images(build, tmp_path):
    r = _run(
        "export", str(build), "--format", "ststnet", "--labels", "casme2_5", "--out", str(tmp_path / "x1")
    )
    assert r.exit_code == 0, r.output
    info = json.loads((tmp_path / "x1" / "export-info.json").read_text())
    assert info["flow"]["clips_from_stored_flow"] == 0 and info["flow"]["backend"] == "dis"
    assert info["manifest_sha256"] and info["clips"] == len(_ok(build))
    assert _run("flow", str(build), "--size", "112").exit_code == 0  # DIS at 112 px: what export computes
    export_build(build, tmp_path / "x2", "ststnet", labels="casme2_5")
    info = json.loads((tmp_path / "x2" / "export-info.json").read_text())
    assert info["flow"]["clips_from_stored_flow"] == info["clips"] > 0
    for p in sorted((tmp_path / "x1" / "whole").glob("*.png")):
        a, b = cv2.imread(str(p)), cv2.imread(str(tmp_path / "x2" / "whole" / p.name))
        assert a.shape == (28, 28, 3) and np.abs(a.astype(int) - b.astype(int)).max() <= 1
    busy = _run("export", str(build), "--format", "npz", "--out", str(tmp_path / "x1"))
    assert busy.exit_code == 2 and "--force" in busy.output
    forced = _run("export", str(build), "--format", "npz", "--out", str(tmp_path / "x1"), "--force")
    assert forced.exit_code == 0 and not (tmp_path / "x1" / "whole").exists()
    bad = _run("export", str(build), "--format", "ststnet", "--out", str(tmp_path / "x3"))
    assert bad.exit_code == 2 and "--labels" in bad.output


def test_export_never_replaces_the_build_itself(build, tmp_path):
    for dest in (build, build.parent):
        with pytest.raises(ConfigError, match="holds\\) the build folder"):
            export_build(build, dest, "npz", force=True)
    assert verify_build(build).ok
