"""`mepipe predict`: a frame folder, a video and a build through `--protocol all` models trained on a real
(synthetic) build; keyframes given or estimated; the rejection paths; the batch form."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from mepipe.build import build_dataset
from mepipe.cli import app
from mepipe.config import load_config
from mepipe.errors import ConfigError
from mepipe.predict import RejectedInput, model_file, predict_build, predict_clip, write_prediction
from mepipe.shards.manifest import read_manifest
from mepipe.synth import synthesize
from mepipe.train import finetune_all
from mepipe.train.runtime import cpu_threads
from tests.toy import tiny_config

MODELS = ("miacnet", "ststnet")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("predict")
    data = synthesize("casme2", root / "data", subjects=2, clips_per_subject=3, seed=3)
    build_dataset(load_config("demo-micro", {"align.crop_size": 64}), data.out, root / "build")
    out = {"root": root, "data": data.out, "build": root / "build"}
    with cpu_threads(1):
        for name in MODELS:
            finetune_all(
                tiny_config("finetune", root / "build", root / name, model__name=name, protocol__name="all",
                            optim__epochs=1)
            )  # fmt: skip
            out[name] = root / name
    return out


def _row(world, clip_id: str = "sub01/EP13_01"):
    return next(r for r in read_manifest(world["build"]) if r.clip_id == clip_id)


def _folder(world, row) -> Path:
    return Path(row.source_path)


@pytest.mark.parametrize("name", MODELS)
def test_a_frame_folder_with_its_keyframes_predicts_what_the_build_predicts(world, name, tmp_path) -> None:
    row = _row(world)
    pred = predict_clip(world[name], _folder(world, row), onset=row.onset, apex=row.apex)
    batch = {r["key"]: r for r in predict_build(world[name], world["build"]).rows}[row.key]
    stored = np.array([batch[f"p_{c}"] for c in pred.classes])
    assert np.allclose(pred.probabilities, stored, atol=1e-5)  # same face stage, same crops, same model
    assert pred.keyframes["onset"] == row.onset and pred.keyframes["apex"] == row.apex
    assert pred.keyframes["source"].startswith("onset=given,apex=given")
    assert pred.predicted == batch["pred_name"] and abs(pred.probabilities.sum() - 1) < 1e-6
    js, png = write_prediction(pred, tmp_path / "p")
    doc = json.loads(js.read_text())
    assert set(doc["probabilities"]) == set(pred.classes) and doc["predicted"] == pred.predicted
    assert doc["model"]["model"] == name and len(doc["model"]["sha256"]) == 64
    assert doc["model"]["training"]["build"]["manifest_sha256"]
    assert {"face_score", "fit_error", "stability", "qa"} <= set(doc["face"])
    img = cv2.imread(str(png))
    assert (
        img is not None
        and img.shape[1] == 4 * 112
        and sorted(p.name for p in (tmp_path / "p").iterdir())
        == [
            "heatmap.png",
            "prediction.json",
        ]
    )


def test_keyframes_are_estimated_when_not_given(world) -> None:
    row = _row(world)
    pred = predict_clip(world["miacnet"], _folder(world, row), fps=200)
    k = pred.keyframes
    assert k["source"] == "estimated" and k["snr"] is not None and k["onset"] < k["apex"]
    assert abs(k["apex"] - row.apex) <= 6  # the synthetic action peaks at the annotated apex
    only_apex = predict_clip(world["miacnet"], _folder(world, row), apex=row.apex, fps=200)
    assert only_apex.keyframes["apex"] == row.apex and "onset=estimated" in only_apex.keyframes["source"]


def _video(folder: Path, path: Path) -> int:
    files = sorted(folder.glob("*.jpg"), key=lambda p: int(re.findall(r"\d+", p.name)[0]))
    first = cv2.imread(str(files[0]))
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, first.shape[1::-1])
    for f in files:
        vw.write(cv2.imread(str(f)))
    vw.release()
    return len(files)


def test_a_video_file(world, tmp_path) -> None:
    row = _row(world)
    n = _video(_folder(world, row), tmp_path / "clip.mp4")
    pred = predict_clip(world["ststnet"], tmp_path / "clip.mp4")
    k = pred.keyframes
    assert 0 <= k["onset"] < k["apex"] < n and k["source"] == "estimated"
    given = predict_clip(world["ststnet"], tmp_path / "clip.mp4", onset=0, apex=row.apex - row.onset)
    assert (given.keyframes["onset"], given.keyframes["apex"]) == (0, row.apex - row.onset)
    with pytest.raises(RejectedInput, match="outside the video's frames") as err:
        predict_clip(world["ststnet"], tmp_path / "clip.mp4", onset=0, apex=n + 5)
    assert err.value.reason == "keyframe_not_on_disk"


def test_rejections_name_the_reason(world, tmp_path) -> None:
    blank = tmp_path / "blank"
    blank.mkdir()
    for i in range(6):
        cv2.imwrite(str(blank / f"img{i}.png"), np.full((240, 320, 3), 128, np.uint8))
    with pytest.raises(RejectedInput, match="no face") as err:
        predict_clip(world["miacnet"], blank)
    assert err.value.reason == "no_face"
    row = _row(world)
    with pytest.raises(ConfigError, match="must come before"):
        predict_clip(world["miacnet"], _folder(world, row), onset=row.apex, apex=row.onset)
    with pytest.raises(ConfigError, match="is not a frame of"):
        predict_clip(world["miacnet"], _folder(world, row), onset=1, apex=row.apex)
    with pytest.raises(ConfigError, match="not a video"):
        predict_clip(world["miacnet"], world["data"] / "CASME2-coding-20140508.xlsx")
    with pytest.raises(ConfigError, match="not found"):
        predict_clip(world["miacnet"], tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RejectedInput):
        predict_clip(world["miacnet"], tmp_path / "empty")
    loso = tmp_path / "loso"
    (loso / "folds").mkdir(parents=True)
    with pytest.raises(ConfigError, match="--protocol all"):
        model_file(loso)
    assert model_file(world["miacnet"] / "model.pt") == world["miacnet"] / "model.pt"
    assert not list(tmp_path.rglob("*.json"))  # nothing written on any refusal


def test_a_build_in_one_go_and_a_mismatching_build_refused(world, tmp_path) -> None:
    res = predict_build(world["ststnet"], world["build"], out=tmp_path / "b")
    ok = [r for r in read_manifest(world["build"]) if r.status == "ok"]
    with open(res.path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["key"] for r in rows] == [r.key for r in ok] and len(rows) == 6
    assert all(r["label_name"] in res.classes for r in rows)
    assert all(abs(sum(float(r[f"p_{c}"]) for c in res.classes) - 1) < 1e-4 for r in rows)
    info = json.loads((tmp_path / "b" / "predict-info.json").read_text())
    assert info["clips"] == 6 and info["model"]["flow_input"]["size"] == 28
    other = tmp_path / "other"
    build_dataset(load_config("demo-micro", {"align.crop_size": 48}), world["data"], other, limit=2)
    with pytest.raises(
        ConfigError, match=r"crop side of the stored frames: build 48, model 64.*align\.crop_size"
    ):
        predict_build(world["ststnet"], other)
    shutil.rmtree(other)


def test_command_line(world, tmp_path) -> None:
    runner = CliRunner()
    row = _row(world)
    folder = str(_folder(world, row))
    r = runner.invoke(app, ["predict", str(world["miacnet"]), folder, "--onset", str(row.onset), "--apex",
                            str(row.apex), "--out", str(tmp_path / "one")])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert f"onset {row.onset}, apex {row.apex}" in r.output and "predicted:" in r.output
    assert (tmp_path / "one" / "prediction.json").is_file() and (tmp_path / "one" / "heatmap.png").is_file()
    r = runner.invoke(app, ["predict", str(world["miacnet"]), "--build", str(world["build"])])
    assert r.exit_code == 0 and r.output.splitlines()[0].startswith("key,dataset,subject,clip_id")
    blank = tmp_path / "blank"
    blank.mkdir()
    for i in range(4):
        cv2.imwrite(str(blank / f"{i}.png"), np.zeros((120, 160, 3), np.uint8))
    r = runner.invoke(app, ["predict", str(world["miacnet"]), str(blank), "--out", str(tmp_path / "two")])
    assert r.exit_code == 1 and "no_face" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "two").exists()
    r = runner.invoke(app, ["predict", str(world["root"]), folder])
    assert r.exit_code == 2 and "--protocol all" in r.output
    r = runner.invoke(app, ["predict", str(world["miacnet"]), folder, "--build", str(world["build"])])
    assert r.exit_code == 2
