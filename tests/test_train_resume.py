"""Checkpoints: contents, determinism by seed, and bit-exact resume on the CPU."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from mepipe.errors import ConfigError
from mepipe.labels import load_scheme
from mepipe.train import finetune_loso, plan_folds, pretrain
from mepipe.train.checkpoint import load_checkpoint
from mepipe.train.frames import load_clips
from mepipe.train.runtime import cpu_threads
from tests.toy import fit_fold, tiny_config, write_toy_build


@pytest.fixture(autouse=True)
def _one_thread():
    """Small models on a busy 2-core machine run far faster single-threaded (restored afterwards)."""
    with cpu_threads(1):
        yield


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("resume")
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
        ),
        "micro": write_toy_build(root / "micro", subjects=3, clips_per_subject=3, n_frames=6, size=32),
    }


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _losses(history: list[dict]) -> list[tuple]:
    return [(h["epoch"], h["loss"], h["latent_loss"], h["pixel_loss"], h["lr"]) for h in history]


def test_pretrain_checkpoint_contents(builds: dict[str, Path], tmp_path: Path) -> None:
    res = pretrain(tiny_config("pretrain", builds["macro"], tmp_path / "run", optim__epochs=1))
    ck = load_checkpoint(res.checkpoint, "pretrain")
    assert ck["epoch"] == 1 and ck["kind"] == "pretrain"
    assert {"model", "optimizer", "scheduler", "rng", "config", "history"} <= set(ck)
    assert {"python", "numpy", "torch", "augment"} <= set(ck["rng"])
    assert ck["config"]["data"]["shards"] == str(builds["macro"]) and ck["config"]["model"]["width"] == 4
    assert any(k.startswith("target_enc.") for k in ck["model"])  # the EMA target is saved too
    assert (tmp_path / "run" / "train.resolved.yaml").is_file()
    with pytest.raises(ConfigError, match="--resume"):
        pretrain(tiny_config("pretrain", builds["macro"], tmp_path / "run", optim__epochs=1))


def test_pretrain_is_deterministic_by_seed(builds: dict[str, Path], tmp_path: Path) -> None:
    runs = [
        pretrain(tiny_config("pretrain", builds["macro"], tmp_path / f"r{i}", run__seed=s))
        for i, s in enumerate([7, 7, 8])
    ]
    assert _same_state(runs[0].model.state_dict(), runs[1].model.state_dict())
    assert _losses(runs[0].history) == _losses(runs[1].history)
    assert not _same_state(runs[0].model.state_dict(), runs[2].model.state_dict())


def test_pretrain_resume_reproduces_the_uninterrupted_run(builds: dict[str, Path], tmp_path: Path) -> None:
    full = pretrain(tiny_config("pretrain", builds["macro"], tmp_path / "full", optim__epochs=2))
    pretrain(tiny_config("pretrain", builds["macro"], tmp_path / "cut", optim__epochs=1))
    resumed = pretrain(
        tiny_config("pretrain", builds["macro"], tmp_path / "cut", optim__epochs=2, run__resume=True)
    )
    assert _losses(full.history) == _losses(resumed.history)
    assert _same_state(full.model.state_dict(), resumed.model.state_dict())
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    assert _same_state(a["model"], b["model"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])

    # the run's files continue too: one history row per epoch, one log with both sessions
    def rows(run: str) -> list[dict]:
        with open(tmp_path / run / "history.csv", newline="") as f:
            return [
                {k: v for k, v in r.items() if k not in ("seconds", "pairs_per_s")} for r in csv.DictReader(f)
            ]

    assert rows("cut") == rows("full") and len(rows("cut")) == 2
    log = (tmp_path / "cut" / "train.log").read_text()
    assert "resuming" in log and log.count("pretrain epoch 1/") == 1 and "pretrain epoch 2/2" in log
    # changed settings are allowed but reported
    pretrain(
        tiny_config(
            "pretrain", builds["macro"], tmp_path / "cut", optim__epochs=3, run__resume=True, optim__lr=5e-4
        )
    )
    assert (
        "optim.lr" in (tmp_path / "cut" / "train.log").read_text().split("resuming with settings changed")[1]
    )


def test_finetune_fold_resume_reproduces_the_uninterrupted_run(
    builds: dict[str, Path], tmp_path: Path
) -> None:
    scheme = load_scheme("casme2_5")
    clips, _, _ = load_clips(builds["micro"], label_fn=lambda r: scheme.label(r.dataset, r.emotion_raw))
    plan = plan_folds(clips)[0]

    def run(out: str, epochs: int, resume: bool):
        cfg = tiny_config(
            "finetune",
            builds["micro"],
            tmp_path / out,
            optim__epochs=epochs,
            run__resume=resume,
            data__jitter=1,
        )
        with cpu_threads(1):
            return fit_fold(cfg, plan, num_classes=5, size=32, checkpoint=tmp_path / out / "fold.pt")

    full = run("full", 3, False)
    run("cut", 2, False)
    resumed = run("cut", 3, True)
    assert [h["train_loss"] for h in full.history] == [h["train_loss"] for h in resumed.history]
    assert _same_state(full.model.state_dict(), resumed.model.state_dict())


def test_checkpoint_every_n_epochs_saves_less_and_trains_the_same(
    builds: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run.checkpoint_every: N`` writes the checkpoint after every N-th and the last epoch only, and
    changes nothing about the training (same losses, same weights as saving every epoch)."""
    import mepipe.train.engine as engine

    scheme = load_scheme("casme2_5")
    clips, _, _ = load_clips(builds["micro"], label_fn=lambda r: scheme.label(r.dataset, r.emotion_raw))
    plan = plan_folds(clips)[0]
    saved: list[tuple[str, int]] = []
    real_save = engine.save_checkpoint

    def spy(path, **kwargs):
        saved.append((Path(path).parent.name, kwargs["epoch"]))
        return real_save(path, **kwargs)

    monkeypatch.setattr(engine, "save_checkpoint", spy)

    def run(out: str, every: int):
        cfg = tiny_config("finetune", builds["micro"], tmp_path / out, optim__epochs=5,
                          run__checkpoint_every=every, data__jitter=1)  # fmt: skip
        return fit_fold(cfg, plan, num_classes=5, size=32, checkpoint=tmp_path / out / "fold.pt")

    each, sparse = run("each", 1), run("sparse", 2)
    assert [e for d, e in saved if d == "each"] == [1, 2, 3, 4, 5]
    assert [e for d, e in saved if d == "sparse"] == [2, 4, 5]
    assert load_checkpoint(tmp_path / "sparse" / "fold.pt")["epoch"] == 5
    assert [h["train_loss"] for h in each.history] == [h["train_loss"] for h in sparse.history]
    assert _same_state(each.model.state_dict(), sparse.model.state_dict())


def test_finetune_resume_skips_finished_folds(builds: dict[str, Path], tmp_path: Path) -> None:
    cfg = tiny_config("finetune", builds["micro"], tmp_path / "run", optim__epochs=1)
    first = finetune_loso(cfg)
    again = finetune_loso(
        tiny_config("finetune", builds["micro"], tmp_path / "run", optim__epochs=1, run__resume=True)
    )
    assert first.metrics["confusion"] == again.metrics["confusion"]
    assert [p["key"] for p in first.predictions] == [p["key"] for p in again.predictions]
    with pytest.raises(ConfigError, match="--resume"):
        finetune_loso(cfg)


def test_pretrain_takes_delta_in_ms(builds: dict[str, Path], tmp_path: Path) -> None:
    # the toy clips have 10 frames at 200 fps: 40-45 ms is 8-9 frames, while 40-45 frames fit no clip
    ms = pretrain(
        tiny_config("pretrain", builds["macro"], tmp_path / "ms", data__delta=[40, 45], data__delta_unit="ms")
    )
    assert ms.history[-1]["pairs"] > 0
    with pytest.raises(ConfigError, match="gives no frame pair.*longest clip has 10 stored frames"):
        pretrain(tiny_config("pretrain", builds["macro"], tmp_path / "f", data__delta=[40, 45]))
