"""What a run leaves behind: train.log, history.csv per run and fold, curves.png, provenance, pictures every
few epochs, TensorBoard (optional), and how an existing run folder is refused, replaced or resumed."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import cv2
import pytest
import torch

from mepipe.errors import ConfigError
from mepipe.provenance import file_sha256
from mepipe.train import finetune_loso, pretrain
from mepipe.train.checkpoint import load_checkpoint
from mepipe.train.runtime import cpu_threads
from tests.toy import tiny_config, write_toy_build


@pytest.fixture(autouse=True)
def _one_thread():
    with cpu_threads(1):
        yield


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("outputs")
    return {
        "macro": write_toy_build(
            root / "macro",
            subjects=2,
            clips_per_subject=2,
            n_frames=10,
            size=32,
            dataset="toymacro",
            expression_type="macro",
            amplitude=60,
            pipeline="demo-macro",
        ),  # fmt: skip
        "micro": write_toy_build(root / "micro", subjects=3, clips_per_subject=2, n_frames=6, size=32),
    }


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_pretrain_outputs_log_history_curves_provenance(builds: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "pre"
    res = pretrain(tiny_config("pretrain", builds["macro"], out, optim__epochs=3))
    hist = _csv(out / "history.csv")
    assert [int(h["epoch"]) for h in hist] == [1, 2, 3]
    assert [float(h["loss"]) for h in hist] == [h["loss"] for h in res.history]
    assert len((out / "history.jsonl").read_text().splitlines()) == 3
    curves = cv2.imread(str(out / "curves.png"))
    assert curves is not None and curves.shape[0] > 100
    log = (out / "train.log").read_text()
    assert "pretrain epoch 3/3" in log and "pretrain: 4 clips" in log
    assert "pretrain: " in log and "steps (100%)" in log  # the progress summary line
    prov = load_checkpoint(res.checkpoint)["provenance"]
    build = (
        json.loads((builds["macro"] / "build-info.json").read_text())
        if (builds["macro"] / "build-info.json").is_file()
        else None
    )
    assert build is None  # toy builds have no build-info.json: the shard attributes are used
    assert prov["build"]["pipeline"] == "demo-macro" and len(prov["build"]["config_hash"]) == 64
    assert prov["build"]["manifest_sha256"] == file_sha256(builds["macro"] / "manifest.csv")
    assert prov["versions"]["torch"] == torch.__version__ and "git_commit" in prov


def test_finetune_outputs_per_fold_and_pooled(builds: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "ft"
    res = finetune_loso(tiny_config("finetune", builds["micro"], out, optim__epochs=2, run__pictures=2))
    pooled = _csv(out / "history.csv")
    assert len(pooled) == 3 * 2 and {r["fold"] for r in pooled} == {
        f["fold"] for f in res.metrics["per_fold"]
    }
    assert all(0.0 <= float(r["train_acc"]) <= 1.0 for r in pooled)
    folds = sorted((out / "folds").iterdir())
    assert len(folds) == 3 and all(len(_csv(f / "history.csv")) == 2 for f in folds)
    assert cv2.imread(str(out / "curves.png")) is not None
    m = json.loads((out / "metrics.json").read_text())
    assert m["provenance"]["build"]["manifest_sha256"] == file_sha256(builds["micro"] / "manifest.csv")
    assert m["model"] == "miacnet"
    assert load_checkpoint(folds[0] / "last.pt")["provenance"] == m["provenance"]
    log = (out / "train.log").read_text()
    assert "fold 1/3 loso-casme2/sub01" in log and "fold 3/3" in log
    assert "DEBUG" in log and "epoch 2/2: loss" in log  # per-epoch lines are in the file
    assert "finetune: 6/6 epochs (100%)" in log


def test_heatmap_titles_carry_clip_id_and_full_class_names(builds: dict[str, Path], tmp_path: Path) -> None:
    from mepipe.labels import load_scheme
    from mepipe.train.evaluate import evaluate_held_out
    from mepipe.train.frames import load_clips
    from mepipe.train.protocol import plan_folds
    from tests.toy import fit_fold, runtime

    scheme = load_scheme("casme2_5")
    clips, _, _ = load_clips(builds["micro"], label_fn=lambda r: scheme.label(r.dataset, r.emotion_raw))
    cfg = tiny_config("finetune", builds["micro"], tmp_path / "x", optim__epochs=1)
    plan = plan_folds(clips)[0]
    fitted = fit_fold(cfg, plan, num_classes=5, size=32)
    preds = evaluate_held_out(
        fitted.model, plan.test, size=32, input_size=32, batch_size=4, rt=runtime(cfg),
        classes=list(scheme.classes), heat=2,
    )  # fmt: skip
    for s, r in zip(preds.heat_samples, preds.rows, strict=False):
        assert s["title"] == r["key"]  # the whole clip id, e.g. casme2/sub01/EP01_hap
        assert f"true {r['label_name']}" in s["subtitle"] and f"predicted {r['pred_name']}" in s["subtitle"]
        assert r["label_name"] in scheme.classes  # full names (repression, not repre)


def test_pretrain_pictures_every_n_epochs_do_not_change_training(
    builds: dict[str, Path], tmp_path: Path
) -> None:
    drawn = pretrain(
        tiny_config(
            "pretrain",
            builds["macro"],
            tmp_path / "p",
            optim__epochs=3,
            run__pictures=2,
            run__pictures_every=1,
        )
    )
    names = sorted(p.name for p in drawn.pictures)
    assert names == sorted(
        f"{k}-epoch{e:03d}.png" for k in ("reconstructions", "heatmaps") for e in (1, 2, 3)
    )
    plain = pretrain(
        tiny_config("pretrain", builds["macro"], tmp_path / "q", optim__epochs=3, run__pictures=0)
    )
    assert [h["loss"] for h in drawn.history] == [h["loss"] for h in plain.history]
    a, b = drawn.model.state_dict(), plain.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    sparse = pretrain(
        tiny_config(
            "pretrain",
            builds["macro"],
            tmp_path / "r",
            optim__epochs=3,
            run__pictures=1,
            run__pictures_every=2,
        )
    )
    assert sorted(p.name for p in sparse.pictures) == [
        "heatmaps-epoch002.png", "heatmaps-epoch003.png", "reconstructions-epoch002.png", "reconstructions-epoch003.png",
    ]  # fmt: skip


def test_existing_run_is_refused_replaced_with_force_or_resumed(
    builds: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    pretrain(tiny_config("pretrain", builds["macro"], out, optim__epochs=1))
    (out / "stale.txt").write_text("from an older run")
    with pytest.raises(ConfigError, match="--resume to continue it, --force to replace it"):
        pretrain(tiny_config("pretrain", builds["macro"], out, optim__epochs=1))
    with pytest.raises(ConfigError, match="holds a 'pretrain' run"):
        finetune_loso(tiny_config("finetune", builds["micro"], out, run__resume=True))
    res = pretrain(tiny_config("pretrain", builds["macro"], out, optim__epochs=2, run__force=True))
    assert not (out / "stale.txt").exists() and len(res.history) == 2
    assert load_checkpoint(out / "last.pt")["epoch"] == 2


def test_a_folder_that_is_not_a_run_is_never_written_or_deleted(
    builds: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    for force in (False, True):
        with pytest.raises(ConfigError, match="holds no mepipe run"):
            pretrain(tiny_config("pretrain", builds["macro"], out, run__force=force))
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"init": "/nonexistent/last.pt"}, "not found"),
        ({"protocol__folds": ["loso-casme2/nobody"]}, "unknown fold"),
        ({"protocol__val_subjects": 5}, "cannot carve"),
        ({"model__name": "resnet-diff", "init": "PRE"}, "takes no MA2MI weights"),
    ],
)
def test_nothing_is_written_before_the_run_is_known_to_be_valid(
    builds: dict[str, Path], tmp_path: Path, overrides: dict, message: str
) -> None:
    if overrides.get("init") == "PRE":
        overrides["init"] = str(
            pretrain(tiny_config("pretrain", builds["macro"], tmp_path / "pre", optim__epochs=1)).checkpoint
        )
    out = tmp_path / "ft"
    with pytest.raises(Exception, match=message):
        finetune_loso(tiny_config("finetune", builds["micro"], out, **overrides))
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_a_config_error_before_writing(builds: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CUDA is not available"):
        pretrain(tiny_config("pretrain", builds["macro"], tmp_path / "cuda", run__device="cuda"))
    assert not (tmp_path / "cuda").exists()


def test_tensorboard_missing_is_a_clear_error(builds: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(ConfigError, match=r"pip install 'mepipe\[tensorboard\]'"):
        pretrain(tiny_config("pretrain", builds["macro"], tmp_path / "tb", run__tensorboard=True))
    assert not (tmp_path / "tb").exists()


def test_tensorboard_scalars_when_enabled(builds: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    finetune_loso(tiny_config("finetune", builds["micro"], out, optim__epochs=2, run__tensorboard=True))
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "loso-casme2/sub01/train_loss" in tags and "loso-casme2/sub03/train_acc" in tags
    assert [e.step for e in events.Scalars("loso-casme2/sub02/train_loss")] == [1, 2]
