"""Flow inputs for flow models (`ststnet`): stored or computed alike, the flow-aware flip, training by the
same LOSO protocol, `--protocol all` recording the input, and STSTNet itself."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mepipe.config import FlowConfig
from mepipe.errors import ConfigError
from mepipe.flow import STSTNET_INPUT, FlowInput
from mepipe.flow_stage import add_flow
from mepipe.labels import load_scheme
from mepipe.train import finetune_all, finetune_loso, load_model, plan_folds
from mepipe.train.config import AugmentConfig, ModelConfig
from mepipe.train.data import PairDataset, PairSampler, keyframe_pairs, make_loader
from mepipe.train.evaluate import predict
from mepipe.train.flowdata import (
    FlowDataset,
    augment_flow,
    clear_cache,
    flip_affine,
    prepare_batch,
    training_input,
)
from mepipe.train.frames import load_clips
from mepipe.train.models import build_model
from mepipe.train.runtime import cpu_threads, make_runtime
from tests.toy import fit_fold, tiny_config, write_toy_build

SCHEME = load_scheme("casme2_5")


@pytest.fixture(autouse=True)
def _one_thread():
    clear_cache()
    with cpu_threads(1):
        yield


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_build(
        tmp_path_factory.mktemp("flowdata") / "micro",
        subjects=3,
        clips_per_subject=8,
        n_frames=10,
        size=48,
        amplitude=40.0,
        max_clips=10,
        pipeline="demo-micro",
    )


def _clips(build: Path):
    return load_clips(build, label_fn=lambda r: SCHEME.label(r.dataset, r.emotion_raw))[0]


def _texture(size: int = 112, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (size // 4, size // 4)).astype(np.float32)
    img = cv2.GaussianBlur(cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC), (0, 0), 1.5)
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def test_stored_flow_and_computed_flow_give_the_same_inputs(toy: Path, tmp_path: Path) -> None:
    stored = tmp_path / "stored"
    shutil.copytree(toy, stored)
    add_flow(stored, FlowConfig(backend="farneback", size=64))
    clips = _clips(stored)
    spec = training_input(clips, "ststnet")  # the build's stored flow settings win over the default DIS
    assert spec is not None and (spec.backend, spec.compute_size) == ("farneback", 64)
    a = FlowDataset(clips, 48, spec)
    assert a.warm() == {"stored": len(clips), "computed": 0}
    clear_cache()
    b = FlowDataset(_clips(toy), 48, spec)  # same settings, no stored flow: computed from the crops
    assert b.warm() == {"stored": 0, "computed": len(clips)}
    xa, xb = a.__getitems__(list(range(len(clips)))), b.__getitems__(list(range(len(clips))))
    assert xa["flow"].shape == (len(clips), 3, 28, 28) and xa["flow"].dtype == torch.float32
    assert torch.allclose(xa["flow"], xb["flow"], atol=1e-5)
    assert float(xa["flow"].min()) == 0.0 and float(xa["flow"].max()) == 1.0  # min-max per sample
    assert torch.equal(xa["label"], torch.tensor([c.label for c in clips]))
    c = clips[0]  # a jittered pair the build does not store is computed with the same settings
    x = a.flow((0, c.onset_idx + 1, c.apex_idx))
    assert a.sources["computed"] == 1 and x.shape == (28, 28, 3)
    assert training_input(clips, "miacnet") is None  # pair models read frame pairs
    assert training_input(_clips(toy), "ststnet") == STSTNET_INPUT  # no stored flow: DIS on 112 px


def test_cache_is_shared_and_keyed_by_settings(toy: Path) -> None:
    clips = _clips(toy)
    first = FlowDataset(clips, 48, STSTNET_INPUT)
    first.warm()
    again = FlowDataset(clips, 48, STSTNET_INPUT)  # e.g. the next LOSO fold
    assert again.warm() == {"stored": 0, "computed": 0}
    other = FlowDataset(clips, 48, STSTNET_INPUT.with_flow("farneback"))
    assert other.warm()["computed"] == len(clips)
    assert not np.allclose(other.flow(other.pairs[0]), first.flow(first.pairs[0]))


def test_flip_of_a_flow_image_is_the_flow_of_the_mirrored_frames() -> None:
    a = _texture()
    m = cv2.getRotationMatrix2D((40, 56), 3, 1.0)  # rotation about a point left of the centre
    b = cv2.warpAffine(a, m, (112, 112), borderMode=cv2.BORDER_REFLECT)
    x = STSTNET_INPUT.from_frames(a, b)
    mirrored = STSTNET_INPUT.from_frames(a[:, ::-1].copy(), b[:, ::-1].copy())
    t = torch.from_numpy(x.transpose(2, 0, 1)[None].copy())
    flip = torch.from_numpy(flip_affine(STSTNET_INPUT))
    turned = augment_flow(t, flip, AugmentConfig(flip=1.0), torch.Generator().manual_seed(0))
    turned_np = turned[0].numpy().transpose(1, 2, 0)
    for k in range(3):  # u, v, strain all match the flow of the mirrored pair
        assert np.corrcoef(turned_np[..., k].ravel(), mirrored[..., k].ravel())[0, 1] > 0.95
    assert np.corrcoef(x[..., 0].ravel(), mirrored[..., 0].ravel())[0, 1] < -0.9  # u changes sign
    kept = augment_flow(t, flip, AugmentConfig(flip=0.0), torch.Generator().manual_seed(0))
    assert torch.equal(kept, t)
    assert np.array_equal(flip_affine(FlowInput(normalisation="none")), [[-1, 0], [1, 0], [1, 0]])


def test_flow_batches_through_a_dataloader_with_workers(toy: Path) -> None:
    clips = _clips(toy)
    ds = FlowDataset(clips, 48, STSTNET_INPUT)
    ds.warm()
    sampler = PairSampler(clips, mode="keyframes", jitter=1, seed=3)
    batch = next(iter(make_loader(ds, sampler, batch_size=5, num_workers=1)))
    x = prepare_batch(batch, 112, device=torch.device("cpu"))
    assert x.shape == (5, 3, 28, 28) and torch.all((x >= 0) & (x <= 1))
    assert ds[0]["flow"].shape == (3, 28, 28) and len(ds) == len(clips)
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_ststnet_learns_the_toy_classes_under_loso(toy: Path, tmp_path: Path) -> None:
    res = finetune_loso(
        tiny_config(
            "finetune", toy, tmp_path / "st", model__name="ststnet", optim__epochs=25, optim__lr=3e-3,
            data__batch_size=8, run__pictures=2,
        )
    )  # fmt: skip
    assert res.metrics["model"] == "ststnet" and res.metrics["n"] == 24 and res.metrics["n_folds"] == 3
    assert res.uf1 > 0.5  # five classes: chance is 0.2
    assert (tmp_path / "st" / "pictures" / "heatmaps.png").is_file()
    with pytest.raises(ConfigError, match="takes no MA2MI weights"):
        from mepipe.train.transfer import apply_init

        apply_init(build_model(ModelConfig(name="ststnet"), 5), {"act.stem.0.weight": torch.zeros(1)})


def test_protocol_all_records_the_flow_input_and_predicts_like_evaluation(toy: Path, tmp_path: Path) -> None:
    res = finetune_all(
        tiny_config("finetune", toy, tmp_path / "all", model__name="ststnet", protocol__name="all")
    )
    trained = load_model(res.model)
    assert trained.flow_input == STSTNET_INPUT and trained.model_config.name == "ststnet"
    assert torch.load(res.model, weights_only=True)["input"]["flow"]["channels"] == ["u", "v", "strain"]
    clips = _clips(toy)
    frames = PairDataset(clips, 48).__getitems__(keyframe_pairs(clips, 0, None))["frames"]
    in_memory = trained.predict(frames).double().numpy()  # flow computed from the frames in memory
    rt = make_runtime("cpu")
    from_shards = predict(trained.model, clips, size=48, input_size=32, batch_size=8, rt=rt)
    assert np.allclose(in_memory, from_shards, atol=1e-5)
    probs, heat = trained.explain(frames[:3])
    assert heat.shape == (3, 10, 10) and float(heat.min()) >= 0 and float(heat.max()) == 1.0
    assert torch.allclose(probs.double(), torch.from_numpy(from_shards[:3]), atol=1e-5)


def test_ststnet_layout_and_exact_heat_map_decomposition() -> None:
    torch.manual_seed(0)
    net = build_model(ModelConfig(name="ststnet"), 3).eval()
    assert [s[0].out_channels for s in net.streams] == [3, 5, 8]
    assert all(s[0].kernel_size == (3, 3) for s in net.streams) and net.head.in_features == 16 * 5 * 5
    out = net.forward_all(torch.rand(4, 3, 28, 28))
    assert out.features.shape == (4, 16, 10, 10) and out.logits.shape == (4, 3)
    top = out.logits.argmax(1)
    score = out.contributions().sum((1, 2)) + net.head.bias[top]
    assert torch.allclose(score, out.logits.max(1).values, atol=1e-5)  # the map sums to the class score
    with pytest.raises(ValueError, match="28, 28"):
        net(torch.rand(2, 2, 3, 112, 112))


def test_ststnet_with_jitter_and_flips_resumes_bit_exactly(toy: Path, tmp_path: Path) -> None:
    plan = plan_folds(_clips(toy))[0]

    def run(out: str, epochs: int, resume: bool):
        cfg = tiny_config(
            "finetune", toy, tmp_path / out, model__name="ststnet", optim__epochs=epochs, run__resume=resume,
            data__jitter=1, augment__flip=0.5,
        )  # fmt: skip
        return fit_fold(cfg, plan, num_classes=5, size=48, checkpoint=tmp_path / out / "fold.pt")

    full = run("full", 4, False)
    run("cut", 2, False)
    clear_cache()  # a new process starts without the cached inputs
    resumed = run("cut", 4, True)
    assert [h["train_loss"] for h in full.history] == [h["train_loss"] for h in resumed.history]
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert full.model.flow_input == resumed.model.flow_input == STSTNET_INPUT
