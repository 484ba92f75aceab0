"""DFEW, FERV39k, MAFW, CK+ and ``folder`` adapters on generated fixtures in the real split-file formats."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from mepipe.build import build_dataset
from mepipe.config import parse_config
from mepipe.datasets import get_adapter
from mepipe.errors import AnnotationError, ConfigError
from mepipe.labels import load_scheme
from mepipe.shards import read_manifest
from tests.macro_fixtures import expression_clip


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_dfew_splits(
    root: Path, folds: dict[int, tuple[list[tuple[int, int]], list[tuple[int, int]]]]
) -> None:
    for k, (train, test) in folds.items():
        for split, rows in (("train", train), ("test", test)):
            lines = ["video_name,label"] + [f"{v},{lab}" for v, lab in rows]
            touch(
                root / "EmoLabel_DataSplit" / f"{split}(single-labeled)" / f"set_{k}.csv",
                ("\n".join(lines) + "\n").encode(),
            )


@pytest.fixture
def dfew_root(tmp_path: Path) -> Path:
    root = tmp_path / "DFEW"
    for v in (1, 2, 3, 5):
        touch(root / "Clip" / "original" / f"{v:05d}.mp4")
        for f in (1, 2, 3):
            touch(root / "Clip" / "jpg_256" / f"{v:05d}" / f"{v:05d}_{f:05d}.jpg")
    write_dfew_splits(
        root,
        {
            1: ([(1, 1), (2, 7)], [(3, 4), (4, 2)]),  # 4 is listed but not on disk
            2: ([(3, 4), (4, 2)], [(1, 1), (2, 7)]),
            3: ([(1, 1), (3, 5), (5, 9)], [(2, 7)]),  # 3 relabelled 5 (conflict); label 9 is invalid
        },
    )
    return root


def test_dfew_video_form_merges_folds(dfew_root: Path):
    scan = get_adapter("dfew", dfew_root).scan()
    clips = {c.clip_id: c for c in scan.clips}
    assert sorted(clips) == ["00001", "00002"]
    c = clips["00001"]
    assert c.source_kind == "video" and c.source_path.endswith("Clip/original/00001.mp4")
    assert c.emotion_raw == "1" and c.expression_type == "macro" and c.subject == "00001"
    assert c.extra == {"set_1": "train", "set_2": "test", "set_3": "train"}
    assert clips["00002"].extra == {"set_1": "train", "set_2": "test", "set_3": "test"}
    reasons = sorted((i.clip_id, i.reason) for _, i in scan.failures)
    assert reasons == [("00003", "label_conflict"), ("00004", "missing_file"), ("row4", "bad_value")]
    conflict = next(i for _, i in scan.failures if i.reason == "label_conflict")
    assert "set_3.csv line 3" in conflict.message and "set_1.csv" in conflict.message
    scheme = load_scheme("dfew_7")
    assert scheme.label("dfew", c.emotion_raw) == 0 and scheme.label("dfew", clips["00002"].emotion_raw) == 6


def test_dfew_frame_form_and_options(dfew_root: Path):
    scan = get_adapter("dfew", dfew_root, form="frames", folds=[1], fps=30).scan()
    clips = {c.clip_id: c for c in scan.clips}
    assert sorted(clips) == ["00001", "00002", "00003"]
    c = clips["00003"]
    assert c.source_kind == "images" and c.frame_numbers == (1, 2, 3) and c.fps == 30.0
    assert c.extra == {"set_1": "test"} and c.emotion_raw == "4"
    with pytest.raises(ConfigError, match="form 'mp4'"):
        get_adapter("dfew", dfew_root, form="mp4").scan()
    with pytest.raises(AnnotationError, match="EmoLabel_DataSplit"):
        get_adapter("dfew", dfew_root / "Clip").scan()
    (dfew_root / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_1.csv").write_text("name,label\n1,1\n")
    with pytest.raises(AnnotationError, match="video_name,label"):
        get_adapter("dfew", dfew_root, folds=[1]).scan()


def test_ferv39k_lists(tmp_path: Path):
    root = tmp_path / "FERV39k"
    for rel in ("Action/Happy/0001", "Action/Sad/0002", "Crime/Angry/0003"):
        touch(root / "2_ClipsforFaceCrop" / rel / "00001.jpg")
        touch(root / "2_ClipsforFaceCrop" / rel / "00002.jpg")
    touch(root / "2_ClipsforFaceCrop" / "Crime" / "Fear" / "0009.mp4")
    setups = root / "4_setups" / "All_scenes"
    touch(setups / "train_All.csv", b"Action/Happy/0001 Happy\nAction/Sad/0002 Sad\nCrime/Fear/0009 Fear\n")
    touch(setups / "test_All.csv", b"Crime/Angry/0003 Angry\nCrime/Angry/0404 Angry\nbroken line here\n")
    scan = get_adapter("ferv39k", root).scan()
    clips = {c.clip_id: c for c in scan.clips}
    assert sorted(clips) == ["Action/Happy/0001", "Action/Sad/0002", "Crime/Angry/0003", "Crime/Fear/0009"]
    assert clips["Crime/Angry/0003"].extra == {"split": "test", "scene": "Crime"}
    assert clips["Action/Happy/0001"].emotion_raw == "Happy" and clips["Action/Happy/0001"].frame_numbers == (
        1,
        2,
    )
    assert clips["Crime/Fear/0009"].source_kind == "video"
    assert sorted(i.reason for _, i in scan.failures) == ["bad_value", "missing_file"]


def test_mafw_lists_and_forms(tmp_path: Path):
    root = tmp_path / "MAFW"
    for name in ("00001", "00002"):
        touch(root / "data" / "clips" / f"{name}.mp4")
        touch(root / "data" / "frames" / name / "1.jpg")
    split = root / "split" / "single" / "no_caption"
    touch(split / "set_1" / "train.txt", b"00001.mp4 anger\n")
    touch(split / "set_1" / "test.txt", b"00002.mp4 helplessness\n00003.mp4 fear\n")
    touch(split / "set_2" / "train.txt", b"00002.mp4 helplessness\n")
    touch(split / "set_2" / "test.txt", b"00001.mp4 anger\n")
    scan = get_adapter("mafw", root).scan()
    clips = {c.clip_id: c for c in scan.clips}
    assert sorted(clips) == ["00001", "00002"] and clips["00001"].source_kind == "video"
    assert clips["00002"].emotion_raw == "helplessness" and clips["00002"].extra == {
        "set_1": "test",
        "set_2": "train",
    }
    assert [i.reason for _, i in scan.failures] == ["missing_file"]
    frames = get_adapter("mafw", root, form="frames").scan()
    assert {c.source_kind for c in frames.clips} == {"images"}


def _write_ckplus(root: Path) -> None:
    frames = expression_clip(8, 0, 7, 7)
    for seq, labelled in (("001", True), ("002", False)):
        folder = root / "cohn-kanade-images" / "S005" / seq
        folder.mkdir(parents=True)
        for k, f in enumerate(frames, start=1):
            cv2.imwrite(str(folder / f"S005_{seq}_{k:08d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2GRAY))
        if labelled:
            touch(root / "Emotion" / "S005" / seq / f"S005_{seq}_00000008_emotion.txt", b"   3.0000000e+00\n")
    touch(root / "cohn-kanade-images" / "S010" / "001" / "S010_001_00000001.png")
    touch(root / "Emotion" / "S010" / "001" / "S010_001_00000001_emotion.txt", b"9.5\n")


def test_ckplus_scan_and_build(tmp_path: Path):
    root = tmp_path / "CK+"
    _write_ckplus(root)
    scan = get_adapter("ckplus", root).scan()
    clips = {c.clip_id: c for c in scan.clips}
    assert sorted(clips) == ["S005/001", "S005/002"]
    c = clips["S005/001"]
    assert (c.subject, c.emotion_raw, c.onset, c.apex, c.offset) == ("S005", "3", 1, 8, 8)
    assert c.keyframe_source == "sequence" and clips["S005/002"].emotion_raw == ""
    assert [(i.clip_id, i.reason) for _, i in scan.failures] == [("S010/001", "bad_value")]
    assert [c.clip_id for c in get_adapter("ckplus", root, labelled_only=True).scan().clips] == ["S005/001"]
    cfg = parse_config(
        {
            "name": "ck",
            "dataset": {"adapter": "ckplus", "options": {"labelled_only": True}},
            "face": {"min_face": 40},
            "align": {"crop_size": 48},
        }
    )
    out = tmp_path / "out"
    build_dataset(cfg, root, out)
    rows = [r for r in read_manifest(out) if r.status == "ok"]
    assert len(rows) == 1 and rows[0].keyframe_source == "sequence"
    assert (rows[0].onset_idx, rows[0].apex_idx, rows[0].offset_idx) == (0, 7, 7)


def test_folder_adapter_tree_and_csv(tmp_path: Path):
    root = tmp_path / "any"
    touch(root / "Train_AFEW" / "Angry" / "000046.avi")
    touch(root / "Train_AFEW" / "Happy" / "000101.mp4")
    touch(root / "frames" / "clipA" / "0001.jpg")
    touch(root / "frames" / "clipA" / "0002.jpg")
    touch(root / "notes.txt")
    tree = get_adapter("folder", root, label_from_parent=True).scan()
    clips = {c.clip_id: c for c in tree.clips}
    assert sorted(clips) == ["Train_AFEW/Angry/000046", "Train_AFEW/Happy/000101", "frames/clipA"]
    assert (
        clips["Train_AFEW/Angry/000046"].emotion_raw == "Angry"
        and clips["frames/clipA"].source_kind == "images"
    )
    touch(
        root / "list.csv",
        (
            b"path,label,subject,onset,apex,offset,split\n"
            b"Train_AFEW/Angry/000046.avi,angry,p1,,,,train\n"
            b"Train_AFEW/Happy/000101,happy,p2,3,7,12,test\n"
            b"frames/clipA,neutral,,1,,2,train\n"
            b"missing.mp4,sad,p3,,,,train\n"
            b"frames/clipA,neutral,,,,,train\n"
            b"frames/clipA2,neutral,,x,,,train\n"
        ),
    )
    touch(root / "frames" / "clipA2" / "0001.jpg")
    scan = get_adapter("folder", root, csv="list.csv", dataset_name="afew").scan()
    clips = {c.clip_id: c for c in scan.clips}
    assert sorted(clips) == ["Train_AFEW/Angry/000046", "Train_AFEW/Happy/000101", "frames/clipA"]
    h = clips["Train_AFEW/Happy/000101"]
    assert (h.dataset, h.subject, h.emotion_raw, h.onset, h.apex, h.offset) == (
        "afew",
        "p2",
        "happy",
        3,
        7,
        12,
    )
    assert h.extra == {"split": "test"} and h.source_kind == "video"
    assert clips["frames/clipA"].subject == "frames/clipA" and clips["frames/clipA"].onset == 1
    assert sorted(i.reason for _, i in scan.failures) == ["bad_value", "duplicate_clip", "missing_file"]
    with pytest.raises(AnnotationError, match="'path' column"):
        touch(root / "bad.csv", b"file,label\na,b\n")
        get_adapter("folder", root, csv="bad.csv").scan()
