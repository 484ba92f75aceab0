"""`export`: frame folders, npz files and STSTNet/HTNet flow images from a real (synthetic) build."""

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from mepipe.build import build_dataset
from mepipe.config import load_config
from mepipe.errors import ConfigError, ShardError
from mepipe.export import export_build, ststnet_image
from mepipe.shards.manifest import read_manifest
from mepipe.shards.reader import read_clip
from mepipe.synth import synthesize


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    data = synthesize("casme2", tmp / "data", subjects=2, clips_per_subject=3, seed=5)
    cfg = load_config("demo-micro", {"align.crop_size": 96})
    build_dataset(cfg, data.out, tmp / "out")
    return tmp / "out"


def _index(path: Path) -> list[dict]:
    with open(path / "index.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_frames_export_writes_onset_and_apex_crops(micro, tmp_path):
    s = export_build(micro, tmp_path / "x", "frames")
    ok = [r for r in read_manifest(micro) if r.status == "ok"]
    assert s.clips == len(ok) > 0 and s.files == 2 * len(ok)
    rows = _index(tmp_path / "x")
    r = rows[0]
    m = next(m for m in ok if m.key == r["key"])
    clip = read_clip(micro / "shards" / m.shard, m.key)
    apex = cv2.imread(str(tmp_path / "x" / r["path"] / "apex.png"))[..., ::-1]
    assert np.array_equal(apex, clip.apex)  # PNG is lossless: the stored crop exactly
    assert r["subject"] == m.subject and int(r["apex_idx"]) == m.apex_idx and r["label"] == "-1"


def test_all_frames_and_npz(micro, tmp_path):
    s = export_build(micro, tmp_path / "all", "frames", frames="all")
    ok = [r for r in read_manifest(micro) if r.status == "ok"]
    assert s.files == sum(r.n_frames for r in ok)
    s = export_build(micro, tmp_path / "npz", "npz", labels="casme2_5")
    row = _index(tmp_path / "npz")[0]
    m = next(m for m in ok if m.key == row["key"])
    z = np.load(tmp_path / "npz" / row["path"])
    clip = read_clip(micro / "shards" / m.shard, m.key)
    assert np.array_equal(z["frames"], clip.frames) and int(z["apex_idx"]) == m.apex_idx
    assert z["transform"].shape in ((2, 3), (m.n_frames, 2, 3))
    assert row["label_name"] in ("happiness", "disgust", "repression", "surprise", "others")


def test_ststnet_layout_is_leave_one_subject_out(micro, tmp_path):
    s = export_build(micro, tmp_path / "st", "ststnet", labels="casme2_5")
    rows = _index(tmp_path / "st")
    subjects = sorted({r["subject"] for r in rows})
    assert len(subjects) == 2 and s.clips == len(rows)
    for held in subjects:
        test = list((tmp_path / "st" / held / "u_test").rglob("*.png"))
        train = list((tmp_path / "st" / held / "u_train").rglob("*.png"))
        assert len(test) == sum(r["subject"] == held for r in rows)
        assert len(train) == len(rows) - len(test)
        assert all(p.name.startswith(held + "_") for p in test)
        assert not any(p.name.startswith(held + "_") for p in train)
    img = cv2.imread(str(tmp_path / "st" / rows[0]["path"]))
    assert img.shape == (28, 28, 3) and img.min() == 0 and img.max() == 255  # per-channel min-max
    label_dirs = {p.parent.name for p in (tmp_path / "st").rglob("u_*/*/*.png")}
    assert label_dirs <= {"0", "1", "2", "3", "4"}


def test_ststnet_image_of_a_still_pair_is_all_zero():
    a = np.full((64, 64, 3), 120, np.uint8)
    assert not ststnet_image(a, a).any()  # no motion: every channel constant -> 0


def test_refusals(micro, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        export_build(micro, tmp_path / "busy", "npz")
    assert (tmp_path / "busy" / "keep.txt").is_file()
    with pytest.raises(ConfigError, match="not a mepipe export"):  # --force replaces only an export
        export_build(micro, tmp_path / "busy", "npz", force=True)
    assert (tmp_path / "busy" / "keep.txt").is_file()
    export_build(micro, tmp_path / "again", "npz")
    export_build(micro, tmp_path / "again", "npz", force=True)  # an earlier export is replaced
    assert (tmp_path / "again" / "export-info.json").is_file()
    with pytest.raises(ConfigError, match="needs --labels"):
        export_build(micro, tmp_path / "y", "ststnet")
    with pytest.raises(ConfigError, match="use one of"):
        export_build(micro, tmp_path / "y", "tfrecord")
    pending = tmp_path / "pending"
    pending.mkdir()
    text = (micro / "manifest.csv").read_text().splitlines()
    header, first = text[0], text[1]
    cols = header.split(",")
    cells = next(csv.reader([first]))
    cells[cols.index("status")] = "pending"
    with open(pending / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerow(cells)
    with pytest.raises(ShardError, match="unfinished build"):
        export_build(pending, tmp_path / "z", "npz")
