"""`--protocol all` (one model on every subject, for use) and every registered model through LOSO."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from mepipe.errors import ConfigError
from mepipe.labels import load_scheme
from mepipe.train import MODELS, finetune_all, finetune_loso, load_model
from mepipe.train.data import PairDataset
from mepipe.train.frames import load_clips
from mepipe.train.runtime import cpu_threads
from tests.toy import tiny_config, write_toy_build


@pytest.fixture(autouse=True)
def _one_thread():
    with cpu_threads(1):
        yield


@pytest.fixture(scope="module")
def micro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_build(
        tmp_path_factory.mktemp("deploy") / "micro",
        subjects=3,
        clips_per_subject=2,
        n_frames=6,
        size=32,
        pipeline="demo-micro",
    )


def test_protocol_all_trains_one_model_and_records_how_to_use_it(micro: Path, tmp_path: Path) -> None:
    out = tmp_path / "all"
    res = finetune_all(tiny_config("finetune", micro, out, protocol__name="all", optim__epochs=2))
    assert res.model == out / "model.pt" and res.n_clips == 6 and len(res.history) == 2
    assert not (out / "metrics.json").exists() and not (out / "folds").exists()  # no test side
    assert (out / "history.csv").is_file() and (out / "curves.png").is_file() and (out / "last.pt").is_file()
    summary = json.loads((out / "model.json").read_text())
    assert summary["subjects"] == ["casme2/sub01", "casme2/sub02", "casme2/sub03"]
    trained = load_model(res.model)
    scheme = load_scheme("casme2_5")
    assert trained.classes == list(scheme.classes) and trained.scheme == "casme2_5"
    assert trained.model_config.width == 4 and trained.input_size == 32 and trained.crop_size == 32
    assert trained.pipeline == yaml.safe_load((micro / "pipeline.resolved.yaml").read_text())
    assert trained.pipeline["name"] == "demo-micro" and "keyframes" in trained.pipeline
    assert len(trained.provenance["build"]["manifest_sha256"]) == 64
    # the rebuilt model predicts what the trained one predicted
    clips, _, _ = load_clips(micro, label_fn=lambda r: scheme.label(r.dataset, r.emotion_raw))
    frames = PairDataset(clips, 32).__getitems__(list(range(len(clips))))["frames"]
    probs = trained.predict(frames)
    assert probs.shape == (6, 5) and torch.allclose(probs.sum(1), torch.ones(6), atol=1e-5)
    ckpt_model = torch.load(out / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(ckpt_model[k], v) for k, v in trained.model.state_dict().items())


def test_protocol_all_is_not_a_loso_run(micro: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="finetune_all"):
        finetune_loso(tiny_config("finetune", micro, tmp_path / "x", protocol__name="all"))
    with pytest.raises(ConfigError, match="protocol.name=all"):
        finetune_all(tiny_config("finetune", micro, tmp_path / "y"))


@pytest.mark.parametrize("name", MODELS.names())
def test_every_registered_model_trains_and_is_scored_by_loso(micro: Path, tmp_path: Path, name: str) -> None:
    res = finetune_loso(
        tiny_config("finetune", micro, tmp_path / name, model__name=name, optim__epochs=1, run__pictures=1)
    )
    assert res.metrics["model"] == name and res.metrics["n"] == 6 and res.metrics["n_folds"] == 3
    assert 0.0 <= res.uf1 <= 1.0 and 0.0 <= res.uar <= 1.0
    assert (tmp_path / name / "pictures" / "heatmaps.png").is_file()
