"""Leak-free LOSO: the held-out subject never reaches training, validation or epoch selection."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from mepipe.folds import make_folds
from mepipe.labels import load_scheme
from mepipe.shards.manifest import read_manifest
from mepipe.train import PeekingError, finetune_loso, fit, plan_folds
from mepipe.train.evaluate import evaluate_held_out
from mepipe.train.finetune import EpochReport
from mepipe.train.frames import load_clips
from mepipe.train.protocol import make_plan
from mepipe.train.runtime import cpu_threads
from tests.toy import fit_fold, runtime, tiny_config, write_toy_build


@pytest.fixture(autouse=True)
def _one_thread():
    """Small models on a busy 2-core machine run far faster single-threaded (restored afterwards)."""
    with cpu_threads(1):
        yield


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_build(
        tmp_path_factory.mktemp("proto") / "micro", subjects=4, clips_per_subject=3, n_frames=6, size=32
    )


def _clips(build: Path):
    scheme = load_scheme("casme2_5")
    clips, rows, _ = load_clips(build, label_fn=lambda r: scheme.label(r.dataset, r.emotion_raw))
    return clips, rows


def test_validation_is_carved_from_training_subjects_only(build: Path) -> None:
    clips, _ = _clips(build)
    plans = plan_folds(clips, "loso", val_subjects=1, seed=0)
    assert len(plans) == 4
    for p in plans:
        val_subjects = {c.subject_key for c in p.val}
        train_subjects = {c.subject_key for c in p.train}
        assert len(val_subjects) == 1 and not val_subjects & train_subjects
        assert p.held_out not in val_subjects | train_subjects
        assert p.test.subjects() == {p.held_out}


def test_requesting_validation_on_the_held_out_subject_raises(build: Path) -> None:
    clips, rows = _clips(build)
    fold = make_folds(rows, "loso")[0]
    with pytest.raises(PeekingError, match="held out"):
        make_plan(fold, clips, val=[fold.held_out])
    with pytest.raises(PeekingError):
        make_plan(fold, clips, val=["casme2/nobody"])
    with pytest.raises(PeekingError):
        make_plan(fold, clips, val=3)  # all 3 training subjects would leave nothing to train on


def test_held_out_clips_are_released_once(build: Path) -> None:
    clips, _ = _clips(build)
    plan = plan_folds(clips)[0]
    assert not hasattr(plan.test, "clips") and len(plan.test) == 3
    plan.test.release()
    with pytest.raises(PeekingError, match="already evaluated"):
        plan.test.release()


def test_training_api_has_no_access_to_test_clips() -> None:
    assert not {"test", "held_out", "test_clips"} & set(inspect.signature(fit).parameters)
    params = set(inspect.signature(evaluate_held_out).parameters)
    assert not {"optimizer", "opt", "epoch", "epochs", "callback", "on_epoch"} & params


def test_selection_callback_never_sees_test_keys(build: Path, tmp_path: Path) -> None:
    reports: list[EpochReport] = []
    cfg = tiny_config("finetune", build, tmp_path / "run", protocol__val_subjects=1, optim__epochs=2)
    res = finetune_loso(cfg, on_epoch=reports.append)
    folds = {f.name: f for f in make_folds(read_manifest(build), "loso")}
    assert {r.fold for r in reports} == set(folds)
    assert len(reports) == 4 * 2
    for r in reports:
        test_keys = set(folds[r.fold].test)
        assert not test_keys & set(r.train_keys)
        assert not test_keys & set(r.val_keys)
        assert r.val_metrics is not None and r.val_keys
        assert not test_keys & set(json.dumps(r.val_metrics).split('"'))
    # every clip is predicted exactly once, by the fold that held its subject out
    keys = [p["key"] for p in res.predictions]
    assert sorted(keys) == sorted(k for f in folds.values() for k in f.test)
    assert all(p["fold"] == f"loso-{p['dataset']}/{p['subject']}" for p in res.predictions)
    per_fold = {f["fold"]: f for f in res.metrics["per_fold"]}
    assert all(1 <= f["chosen_epoch"] <= 2 for f in per_fold.values())


def test_evaluation_runs_once_per_fold(build: Path) -> None:
    clips, _ = _clips(build)
    cfg = tiny_config("finetune", build, "unused", optim__epochs=1)
    plan = plan_folds(clips)[0]
    rt = runtime(cfg)
    with cpu_threads(1):
        fitted = fit_fold(cfg, plan, num_classes=5, size=32, rt=rt)
    classes = list(load_scheme("casme2_5").classes)
    kw = dict(size=32, input_size=32, batch_size=4, rt=rt, classes=classes)
    preds = evaluate_held_out(fitted.model, plan.test, **kw)
    assert len(preds.rows) == 3
    with pytest.raises(PeekingError):
        evaluate_held_out(fitted.model, plan.test, **kw)


@pytest.mark.parametrize("parts", ["transferred", "early"])
def test_freeze_parts_hold_the_pre_trained_weights_for_freeze_epochs(build: Path, parts: str) -> None:
    import torch

    from mepipe.train.models import build_model

    clips, _ = _clips(build)
    plan = plan_folds(clips)[0]
    torch.manual_seed(123)  # "pre-trained" weights that differ from the fold's own initialisation
    donor = build_model(tiny_config("finetune", build, "unused").model, 5)
    init = {k: v.clone() for k, v in donor.state_dict().items() if k.startswith(("act.", "pos."))}

    def unchanged(epochs: int) -> tuple[set[str], set[str], set[str]]:
        cfg = tiny_config(
            "finetune",
            build,
            "unused",
            optim__epochs=epochs,
            optim__freeze_epochs=1,
            optim__freeze_parts=parts,
        )
        model = fit_fold(cfg, plan, num_classes=5, size=32, init_state=init).model
        params = dict(model.named_parameters())
        early = {n for n, p in params.items() if any(p is q for q in model.early_parameters())}
        same = {k for k in init if k in params and torch.equal(params[k].detach(), init[k])}
        return same, early, {k for k in init if k in params}

    same, early, transferred = unchanged(1)
    if parts == "transferred":
        assert same == transferred  # no pre-trained weight moved while frozen: only the new ones trained
    else:
        assert early <= same and same < transferred  # only the early ones held
    same, _, _ = unchanged(2)
    assert not same  # unfrozen after the first epoch: every pre-trained weight trains
