"""The trainer refuses crafted shards (external links, external storage, virtual datasets), checkpoints
that need arbitrary unpickling, and unfinished builds, with clear errors and the right exit codes."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mepipe.cli import app
from mepipe.errors import ConfigError, ShardError
from mepipe.train import ClipDataset, PairDataset, finetune_loso, pretrain
from mepipe.train.checkpoint import FORMAT, load_checkpoint
from mepipe.train.deploy import load_model
from mepipe.train.frames import load_clips
from mepipe.train.runtime import cpu_threads
from tests.toy import tiny_config, write_toy_build


@pytest.fixture(autouse=True)
def _one_thread():
    with cpu_threads(1):
        yield


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_build(
        tmp_path_factory.mktemp("bad") / "micro", subjects=2, clips_per_subject=2, n_frames=6, size=32
    )


def _copy(build: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "build"
    shutil.copytree(build, dst)
    return dst


def _first_clip(build: Path) -> tuple[Path, str]:
    with open(build / "manifest.csv", newline="") as f:
        row = next(csv.DictReader(f))
    return build / "shards" / row["shard"], row["key"]


def _external_link(shard: Path, key: str, outside: Path) -> None:
    with h5py.File(shard, "a") as f:
        f["clips"][key]["notes"] = h5py.ExternalLink(str(outside), "/data")


def _external_storage(shard: Path, key: str, outside: Path) -> None:
    with h5py.File(shard, "a") as f:
        g = f["clips"][key]
        shape = g["frames"].shape
        outside.write_bytes(np.full(int(np.prod(shape)), 7, np.uint8).tobytes())
        del g["frames"]
        g.create_dataset(
            "frames", shape=shape, dtype=np.uint8, external=[(str(outside), 0, int(np.prod(shape)))]
        )


def _virtual(shard: Path, key: str, outside: Path) -> None:
    with h5py.File(outside, "w") as src:
        src["x"] = np.zeros((6, 32, 32, 3), np.uint8)
    with h5py.File(shard, "a") as f:
        g = f["clips"][key]
        layout = h5py.VirtualLayout(shape=(6, 32, 32, 3), dtype=np.uint8)
        layout[:] = h5py.VirtualSource(str(outside), "x", shape=(6, 32, 32, 3))
        del g["frames"]
        g.create_virtual_dataset("frames", layout)


@pytest.mark.parametrize(
    "craft", [_external_link, _external_storage, _virtual], ids=["link", "storage", "virtual"]
)
def test_crafted_shards_are_refused_by_every_loader(clean: Path, tmp_path: Path, craft) -> None:
    build = _copy(clean, tmp_path)
    shard, key = _first_clip(build)
    craft(shard, key, tmp_path / "outside.bin")
    clips, _, _ = load_clips(build)
    with pytest.raises(ShardError, match="refers to data outside itself"):
        PairDataset(clips, 32)[0]
    with pytest.raises(ShardError, match="outside itself"):
        ClipDataset(clips)
    with pytest.raises(ShardError, match=str(shard.name)):
        finetune_loso(tiny_config("finetune", build, tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    r = CliRunner().invoke(app, ["train", "finetune", "--build", str(build), "--out", str(tmp_path / "cli")])
    assert r.exit_code == 1 and "outside itself" in r.output and "Traceback" not in r.output


def test_unfinished_build_is_refused(clean: Path, tmp_path: Path) -> None:
    build = _copy(clean, tmp_path)
    text = (build / "manifest.csv").read_text().splitlines()
    header = text[0].split(",")
    cells = text[-1].split(",")
    cells[header.index("status")] = "pending"
    (build / "manifest.csv").write_text("\n".join([*text[:-1], ",".join(cells)]) + "\n")
    with pytest.raises(ShardError, match="unfinished build: 1 of 4 clips are still pending"):
        load_clips(build)
    with pytest.raises(ShardError, match="unfinished build"):
        ClipDataset.from_build(build)
    with pytest.raises(ShardError, match="unfinished build"):
        pretrain(tiny_config("pretrain", build, tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    r = CliRunner().invoke(app, ["train", "pretrain", "--build", str(build), "--out", str(tmp_path / "cli")])
    assert r.exit_code == 1 and "mepipe build-dataset" in r.output and not (tmp_path / "cli").exists()


class Payload:
    """Anything that is not a tensor or plain data: weights_only loading refuses it."""

    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("content", ["pickle", "garbage", "empty"])
def test_checkpoints_that_fail_weights_only_loading_are_clear_errors(
    tmp_path: Path, content: str, capfd
) -> None:
    path = tmp_path / "evil.pt"
    if content == "pickle":
        torch.save({"format": FORMAT, "kind": "pretrain", "model": {}, "x": Payload()}, path)
    elif content == "garbage":
        path.write_bytes(b"PK\x03\x04 this is not a torch file" * 10)
    else:
        path.write_bytes(b"")
    with pytest.raises(ConfigError, match="not loadable as a plain-tensor checkpoint") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)
    with pytest.raises(ConfigError, match="weights_only"):
        load_model(path)
    assert "this must never run" not in capfd.readouterr().out


def test_cli_init_with_a_crafted_checkpoint_exits_2_without_traceback(clean: Path, tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"x": Payload()}, path)
    r = CliRunner().invoke(
        app, ["train", "finetune", "--build", str(clean), "--out", str(tmp_path / "ft"), "--init", str(path)]
    )
    assert r.exit_code == 2 and "weights_only" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "ft").exists()
    foreign = tmp_path / "foreign.pt"
    torch.save({"state": torch.zeros(2)}, foreign)
    with pytest.raises(ConfigError, match="not a mepipe training checkpoint"):
        load_checkpoint(foreign)


def test_a_shard_changed_after_its_check_is_checked_again(clean: Path, tmp_path: Path) -> None:
    build = _copy(clean, tmp_path)
    clips, _, _ = load_clips(build)
    assert PairDataset(clips, 32)[0]["frames"].shape == (2, 32, 32, 3)  # checked once, fine
    shard, key = _first_clip(build)
    _external_storage(shard, key, tmp_path / "outside.bin")  # crafted in place afterwards
    with pytest.raises(ShardError, match="external file"):
        PairDataset(clips, 32)[0]
