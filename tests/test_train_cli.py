"""`mepipe train pretrain` / `mepipe train finetune` end to end on a toy build (with pictures)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
import yaml
from typer.testing import CliRunner

from mepipe.cli import app
from mepipe.train.checkpoint import load_checkpoint
from mepipe.train.pictures import BAND
from tests.toy import TINY_OVERRIDES, write_toy_build


def _sets(kind: str) -> list[str]:
    out = []
    for k, v in TINY_OVERRIDES.items():
        if kind == "finetune" and k.startswith("ma2mi."):
            continue
        if k in ("run.pictures", "optim.epochs"):
            continue
        out += ["--set", f"{k}={v}"]
    return out


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    return {
        "macro": write_toy_build(
            root / "macro",
            subjects=2,
            clips_per_subject=2,
            n_frames=12,
            size=32,
            dataset="toymacro",
            expression_type="macro",
            amplitude=60,
        ),
        "micro": write_toy_build(root / "micro", subjects=3, clips_per_subject=2, n_frames=6, size=32),
    }


def test_pretrain_then_finetune_from_the_command_line(builds: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    cfg_file = tmp_path / "pre.yaml"
    cfg_file.write_text(yaml.safe_dump({"optim": {"epochs": 1}, "run": {"pictures": 2}}))
    pre = tmp_path / "pre"
    r = runner.invoke(
        app,
        [
            "train",
            "pretrain",
            "--build",
            str(builds["macro"]),
            "--out",
            str(pre),
            "--delta",
            "2:3",
            "--config",
            str(cfg_file),
            *_sets("pretrain"),
        ],
    )
    assert r.exit_code == 0, r.output
    resolved = yaml.safe_load((pre / "train.resolved.yaml").read_text())
    assert resolved["data"]["delta"] == [2, 3] and resolved["optim"]["epochs"] == 1
    assert load_checkpoint(pre / "last.pt")["config"] == resolved
    for name in ("reconstructions-epoch001.png", "heatmaps-epoch001.png"):
        img = cv2.imread(str(pre / "pictures" / name))
        assert img is not None and img.shape[0] == 2 * (BAND + 112)  # one titled 112-px row per sample

    ft = tmp_path / "ft"
    r = runner.invoke(
        app,
        [
            "train",
            "finetune",
            "--build",
            str(builds["micro"]),
            "--labels",
            "casme2_5",
            "--protocol",
            "loso",
            "--init",
            str(pre / "last.pt"),
            "--out",
            str(ft),
            "--epochs",
            "1",
            "--set",
            "run.pictures=3",
            *_sets("finetune"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "UF1" in r.output
    m = json.loads((ft / "metrics.json").read_text())
    assert {"acc", "uf1", "uar", "per_class", "confusion", "per_dataset", "per_fold"} <= set(m)
    assert m["n"] == 6 and m["n_folds"] == 3 and m["init"] == str(pre / "last.pt")
    assert (ft / "predictions.csv").read_text().count("\n") == 7
    assert (ft / "per_class.csv").is_file()
    assert cv2.imread(str(ft / "confusion.png")) is not None
    assert cv2.imread(str(ft / "pictures" / "heatmaps.png")).shape[0] == 3 * (BAND + 112)


def test_cli_errors_are_friendly(builds: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    cases = [
        ("finetune", "micro", ["--set", "optim.nope=1"], "optim.nope"),
        ("pretrain", "macro", ["--delta", "5:2"], "data.delta"),
        ("finetune", "micro", ["--init", str(tmp_path / "missing.pt")], "missing.pt"),
    ]
    for k, (cmd, kind, extra, word) in enumerate(cases):
        args = ["train", cmd, "--build", str(builds[kind]), "--out", str(tmp_path / f"x{k}"), *extra]
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and word in r.output, (args, r.output)


def test_help_lists_the_choices() -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["train", "finetune", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    text = " ".join(r.output.split())
    assert "loso|lodo|all" in text and "resnet-diff" in text and "casme2_5" in text and "cuda:N" in text
    assert "train-finetune" in text and "--force" in text
    r = runner.invoke(app, ["train", "pretrain", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "--force" in r.output and "train-pretrain-gpu" in " ".join(r.output.split())


def test_exit_codes_force_and_nothing_written_on_config_errors(
    builds: dict[str, Path], tmp_path: Path
) -> None:
    runner = CliRunner()
    out = tmp_path / "ft"
    base = ["train", "finetune", "--build", str(builds["micro"]), "--out", str(out), "--epochs", "1"]
    base += _sets("finetune")
    for bad in (
        ["--set", "optim.lr=-1"],
        ["--set", "augment.flip=2"],
        ["--labels", "casme2_9"],
        ["--protocol", "kfold"],
    ):
        r = runner.invoke(app, [*base, *bad])
        assert r.exit_code == 2, r.output
        assert "Traceback" not in r.output and not out.exists()
    r = runner.invoke(app, [*base, "--set", "optim.lr=-1"])
    assert "optim.lr" in r.output and "greater than 0" in r.output and "-1" in r.output
    r = runner.invoke(app, [*base, "--protocol", "kfold"])
    assert "loso" in r.output and "lodo" in r.output
    r = runner.invoke(app, base)
    assert r.exit_code == 0, r.output
    assert "fold 1/3" in r.output  # progress of the folds on the console
    r = runner.invoke(app, base)
    assert r.exit_code == 2 and "--force" in r.output
    (out / "marker").write_text("old")
    r = runner.invoke(app, [*base, "--force", "-q"])
    assert r.exit_code == 0 and not (out / "marker").exists()
    assert "fold 1/3" not in r.output  # -q: warnings only
    r = runner.invoke(app, [*base, "--force", "--resume"])
    assert r.exit_code == 2 and "exclude each other" in r.output


def test_bundled_config_by_name_and_protocol_all(builds: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "all"
    r = runner.invoke(
        app,
        ["train", "finetune", "--config", "train-finetune", "--build", str(builds["micro"]), "--out", str(out),
         "--protocol", "all", "--model", "resnet-diff", "--epochs", "1", *_sets("finetune")],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "model.pt" in r.output and (out / "model.pt").is_file()
    resolved = yaml.safe_load((out / "train.resolved.yaml").read_text())
    assert resolved["protocol"]["name"] == "all" and resolved["model"]["name"] == "resnet-diff"
    assert resolved["optim"]["lr"] == 8.0e-4  # from configs/train-finetune.yaml


def test_a_classifier_trained_with_labels_initialises_finetuning(
    builds: dict[str, Path], tmp_path: Path
) -> None:
    """``--init RUN/model.pt`` (or that run's ``last.pt``) of a MIACNet trained with labels transfers its
    E_act/E_pos like an MA2MI checkpoint (supervised pre-training, MA2MI's comparison); a model without
    those branches is refused with exit code 2."""
    import torch

    from mepipe.train.transfer import load_init_state

    runner = CliRunner()
    sup = tmp_path / "sup"
    common = ["--build", str(builds["micro"]), "--epochs", "1", *_sets("finetune")]
    r = runner.invoke(app, ["train", "finetune", "--protocol", "all", "--out", str(sup), *common])
    assert r.exit_code == 0, r.output
    saved = torch.load(sup / "model.pt", weights_only=True)["model"]
    for name in ("model.pt", "last.pt"):
        state, cfg = load_init_state(sup / name)
        assert (
            cfg["model"]["name"] == "miacnet" and cfg["model"]["width"] == saved["act.stem.0.weight"].shape[0]
        )
        assert set(state) == {k for k in saved if k.startswith(("act.", "pos."))}
        assert all(torch.equal(state[k], saved[k]) for k in state)
    assert set(load_init_state(sup / "model.pt", "action")[0]) == {k for k in saved if k.startswith("act.")}
    ft = tmp_path / "ft"
    r = runner.invoke(app, ["train", "finetune", "--init", str(sup / "model.pt"), "--out", str(ft), *common])
    assert r.exit_code == 0, r.output
    assert json.loads((ft / "metrics.json").read_text())["init"] == str(sup / "model.pt")

    base = tmp_path / "resnet"
    r = runner.invoke(app, ["train", "finetune", "--protocol", "all", "--model", "resnet-diff", "--out", str(base),
                            *common])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app, ["train", "finetune", "--init", str(base / "model.pt"), "--out", str(tmp_path / "x"), *common]
    )
    assert r.exit_code == 2 and "no pre-trained tensor matches" in r.output
    assert not (tmp_path / "x").exists()
