"""`mepipe demo` end to end at a tiny size: every stage runs and leaves its artefacts."""

import json

from typer.testing import CliRunner

from mepipe.cli import app
from mepipe.demo import DemoSizes, run_demo


def test_demo_runs_every_stage_and_writes_results(tmp_path):
    sizes = DemoSizes(
        micro_subjects=2,
        micro_clips=4,
        macro_subjects=2,
        macro_clips=2,
        pretrain_epochs=1,
        finetune_epochs=1,
        workers=1,
        macro_frames=(9, 12),
    )
    lines: list[str] = []
    res = run_demo(tmp_path / "demo", seed=1, sizes=sizes, log=lines.append)
    assert set(res.metrics) == {"scratch", "ma2mi"}  # the ablations are the transfer experiment's
    for m in res.metrics.values():
        assert 0.0 <= m["uf1"] <= 1.0 and 0.0 <= m["uar"] <= 1.0 and m["n"] > 0
    out = tmp_path / "demo"
    saved = json.loads((out / "results.json").read_text())
    assert saved["metrics"] == res.metrics and saved["seed"] == 1
    assert saved["sizes"]["macro_frames"] == [9, 12] and saved["sizes"]["micro_clips"] == 4
    assert saved["data"]["pretrain"] == {"data.pairs_per_clip": 2}
    macro_truth = json.loads((out / "data" / "macro" / "synth_ground_truth.json").read_text())
    assert all(9 <= c["n_frames"] <= 12 for c in macro_truth["clips"])  # only the macro clips are short
    micro_truth = json.loads((out / "data" / "micro" / "synth_ground_truth.json").read_text())
    assert max(c["n_frames"] for c in micro_truth["clips"]) > 12
    pre_cfg = (out / "runs" / "pretrain" / "train.resolved.yaml").read_text()
    assert "pairs_per_clip: 2\n" in pre_cfg
    assert (out / "micro-contact-sheet.png").is_file()
    assert (out / "runs" / "pretrain" / "last.pt").is_file()
    assert list((out / "runs" / "pretrain" / "pictures").glob("reconstructions-*.png"))
    assert (out / "runs" / "ma2mi" / "pictures" / "heatmaps.png").is_file()
    ma2mi_cfg = (out / "runs" / "ma2mi" / "train.resolved.yaml").read_text()
    assert ma2mi_cfg.count("last.pt") == 1 and "checkpoint_every: 10\n" in ma2mi_cfg  # init recorded
    assert any("verified" in line for line in lines)
    assert "UF1" in res.table() and "ma2mi" in res.table()


def test_demo_cli_refuses_bad_workers():
    res = CliRunner().invoke(app, ["demo", "--workers", "0"])
    assert res.exit_code != 0 and "workers" in res.output


def test_run_overrides_cannot_silently_replace_what_the_arguments_set(tmp_path):
    """An override of a key the run's own arguments (or the variant) set is refused with the key named,
    before anything is trained; other keys pass through."""
    import pytest

    from mepipe.demo import finetune_run, pretrain_settings
    from mepipe.errors import ConfigError

    sizes = DemoSizes()
    with pytest.raises(ConfigError, match=r"data\.delta is set by the run's own arguments"):
        pretrain_settings(tmp_path, tmp_path, 0, sizes, delta=(1, 2), overrides={"data.delta": [1, 8]})
    with pytest.raises(ConfigError, match=r"optim\.epochs, run\.seed are set"):
        pretrain_settings(tmp_path, tmp_path, 0, sizes, overrides={"run.seed": 3, "optim.epochs": 2})
    over = pretrain_settings(tmp_path, tmp_path, 7, sizes, overrides={"data.delta": [1, 8]})
    assert over["data.delta"] == [1, 8] and over["run.seed"] == 7
    with pytest.raises(ConfigError, match=r"fine-tuning no-position: model\.name is set"):
        finetune_run(tmp_path / "run", tmp_path, 0, sizes, "no-position", overrides={"model.name": "miacnet"})
    assert not (tmp_path / "run").exists()


def test_supervised_macro_pretraining_writes_a_model_that_initialises_finetuning(tmp_path):
    """``supervised_run``: MIACNet trained on every macro clip with the DFEW labels; its ``model.pt``
    holds the DFEW classes and gives ``finetune --init`` the E_act/E_pos tensors."""
    import torch

    from mepipe.demo import supervised_run
    from mepipe.train.transfer import load_init_state
    from tests.toy import write_toy_build

    macro = write_toy_build(tmp_path / "macro", subjects=2, clips_per_subject=2, n_frames=8, size=32,
                            dataset="dfew", classes=("happy", "sad", "surprise"))  # fmt: skip
    model = supervised_run(tmp_path / "sup", macro, 0, DemoSizes(finetune_epochs=1), threads=1)
    saved = torch.load(model, weights_only=True)
    assert model == tmp_path / "sup" / "model.pt" and saved["classes"] == ["happy", "sad", "neutral", "angry",
                                                                            "surprise", "disgust", "fear"]  # fmt: skip
    state, cfg = load_init_state(model)
    assert cfg["model"]["name"] == "miacnet" and state and all(k.startswith(("act.", "pos.")) for k in state)
    assert json.loads((tmp_path / "sup" / "model.json").read_text())["n_clips"] == 4


def test_demo_cli_prints_the_table_with_its_seed_and_clip_count(monkeypatch, tmp_path):
    """The CLI is a thin wrapper: the table of :func:`mepipe.api.demo`'s result, the seed it ran, and
    the size of one clip on the held-out set it was measured on."""
    from mepipe import api
    from mepipe.demo import DemoResult

    got: dict = {}
    metrics = {v: {"uf1": u, "uar": u, "acc": u, "n": 55} for v, u in (("scratch", 0.78), ("ma2mi", 0.925))}

    def fake_demo(**kwargs):
        got.update(kwargs)
        return DemoResult(tmp_path, metrics)

    monkeypatch.setattr(api, "demo", fake_demo)
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--seed", "3", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert got["seed"] == 3 and got["workers"] == 1
    assert "seed 3" in res.output and "0.925" in res.output and "0.780" in res.output
    assert "55 held-out clips one clip is 1.8 accuracy points" in res.output
