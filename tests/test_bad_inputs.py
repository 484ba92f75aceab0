"""Adapter-level bad input (issue #9): each becomes one failed row naming the file or row and the fix,
and the rest of the scan (and build) goes on -- a repeated sheet row, a path leaving --source, two
frame files with one number, a stray non-frame image."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mepipe.build import build_dataset
from mepipe.config import parse_config
from mepipe.datasets import get_adapter
from mepipe.datasets.base import FrameLister, FrameListError, ScanResult, list_frames
from mepipe.records import ClipRecord
from mepipe.shards import read_manifest
from tests.conftest import write_casme2_sheet
from tests.test_adapters_me import frames

GOOD = [1, "EP02_01f", None, 46, 51, 57, None, "4+7", "disgust"]


def fails(scan) -> dict[str, tuple[str, str]]:
    return {i.clip_id: (i.reason, i.message) for _, i in scan.failures}


def test_repeated_sheet_row_is_a_duplicate_clip_and_the_build_goes_on(casme2_root: Path, tmp_path: Path):
    sheet = casme2_root / "CASME2-coding-20140508.xlsx"
    write_casme2_sheet(sheet, [GOOD, [2, "EP05_03f", None, 8, 13, 19, None, "R12", "happiness"], GOOD, GOOD])
    scan = get_adapter("casme2", casme2_root).scan()
    assert [c.clip_id for c in scan.clips] == ["sub01/EP02_01f", "sub02/EP05_03f"]
    dups = {k: v for k, v in fails(scan).items() if v[0] == "duplicate_clip"}
    assert set(dups) == {"sub01/EP02_01f@row4", "sub01/EP02_01f@row5"}  # keys stay unique
    reason, msg = dups["sub01/EP02_01f@row4"]
    assert f"{sheet} row 4" in msg and f"first at {sheet} row 2" in msg and "Remove the repeated row" in msg
    cfg = parse_config(
        {"name": "t", "dataset": {"adapter": "casme2"}, "face": {"min_face": 60}, "align": {"crop_size": 64}}
    )
    summary = build_dataset(cfg, casme2_root, tmp_path / "out")
    rows = read_manifest(tmp_path / "out")
    assert summary.clips_ok == 2 and len({r.key for r in rows}) == len(rows) == 4
    assert sorted(r.reason for r in rows if r.status == "failed") == ["duplicate_clip", "duplicate_clip"]


def test_failed_rows_take_part_in_duplicate_detection():
    out = ScanResult()
    from mepipe.records import ClipIssue

    out.fail(ClipIssue("x", "s1/a", "bad_value", "sheet row 2: bad", "s1", "sheet", 2))
    out.add(ClipRecord("x", "s1", "s1/a", "images", "/data/a"), file="sheet", row=7)
    assert [i.reason for _, i in out.failures] == ["bad_value", "duplicate_clip"] and not out.clips
    assert "first at sheet row 2" in out.failures[1][1].message


@pytest.mark.parametrize("filename", ["../../../outside/EP01", "ABSOLUTE"])
def test_filename_leaving_the_source_is_refused(casme2_root: Path, tmp_path: Path, filename: str):
    outside = tmp_path / "outside" / "EP01"
    frames(outside, range(46, 58))  # a real frame folder, outside the dataset root
    name = str(outside) if filename == "ABSOLUTE" else filename
    write_casme2_sheet(
        casme2_root / "CASME2-coding-20140508.xlsx", [GOOD, [1, name, None, 46, 51, 57, None, "4", "others"]]
    )
    scan = get_adapter("casme2", casme2_root).scan()
    assert [c.clip_id for c in scan.clips] == ["sub01/EP02_01f"]
    (issue,) = [i for _, i in scan.failures]
    assert issue.reason == "path_outside_source" and issue.row == 3
    assert str(outside.resolve()) in issue.message and "nothing outside --source is read" in issue.message
    assert not [c for c in scan.clips if c.frame_files and "outside" in c.source_path]


def test_symlinks_are_followed_only_inside_the_source(casme2_root: Path, tmp_path: Path):
    outside = tmp_path / "elsewhere" / "EP09_09"
    frames(outside, range(1, 6))
    clips = casme2_root / "CASME2_RAW_selected" / "sub01"
    os.symlink(outside, clips / "EP09_09")  # a clip folder linked from outside
    os.symlink(clips / "EP02_01f", clips / "EP02_01f_link")  # a link that stays inside: fine
    frames(clips / "EP08_08", range(1, 5))
    os.symlink(outside / "img5.jpg", clips / "EP08_08" / "img5.jpg")  # one frame linked from outside
    write_casme2_sheet(
        casme2_root / "CASME2-coding-20140508.xlsx",
        [
            GOOD,
            [1, "EP09_09", None, 1, 3, 5, None, "4", "others"],
            [1, "EP02_01f_link", None, 46, 51, 57, None, "4", "others"],
            [1, "EP08_08", None, 1, 3, 5, None, "4", "others"],
        ],
    )
    scan = get_adapter("casme2", casme2_root).scan()
    assert sorted(c.clip_id for c in scan.clips) == ["sub01/EP02_01f", "sub01/EP02_01f_link"]
    f = fails(scan)
    assert f["sub01/EP09_09"][0] == "path_outside_source" and str(outside.resolve()) in f["sub01/EP09_09"][1]
    assert f["sub01/EP08_08"][0] == "path_outside_source" and "img5.jpg" in f["sub01/EP08_08"][1]


def test_folder_adapter_csv_path_outside_and_video_symlink(tmp_path: Path):
    root = tmp_path / "any"
    frames(root / "clips" / "a", range(1, 4))
    frames(tmp_path / "secret" / "b", range(1, 4))
    (tmp_path / "secret" / "v.mp4").write_bytes(b"x")
    os.symlink(tmp_path / "secret" / "v.mp4", root / "clips" / "v.mp4")
    (root / "list.csv").write_text("path,label\nclips/a,x\n../secret/b,y\nclips/v.mp4,z\n")
    scan = get_adapter("folder", root, csv="list.csv").scan()
    assert [c.clip_id for c in scan.clips] == ["clips/a"]
    f = fails(scan)
    assert f["../secret/b"][0] == "path_outside_source" and f["clips/v"][0] == "path_outside_source"
    tree = get_adapter("folder", root).scan()  # walking the tree: the linked video is refused too
    assert [c.clip_id for c in tree.clips] == ["clips/a"] and fails(tree)["clips/v"][
        0
    ] == "path_outside_source"


def test_two_files_with_one_frame_number(casme2_root: Path):
    folder = casme2_root / "CASME2_RAW_selected" / "sub01" / "EP02_01f"
    (folder / "img0050.jpg").write_bytes((folder / "img50.jpg").read_bytes())
    with pytest.raises(FrameListError, match=r"img0050\.jpg and img50\.jpg both give frame number 50") as err:
        list_frames(folder)
    assert err.value.reason == "duplicate_frame_number"
    scan = get_adapter("casme2", casme2_root).scan()
    reason, msg = fails(scan)["sub01/EP02_01f"]
    assert reason == "duplicate_frame_number" and "img0050.jpg" in msg and "img50.jpg" in msg
    assert "row 2" in msg and len(scan.clips) == 2  # the other clips still build
    # the macro adapters list frames the same way
    lister = FrameLister((casme2_root,))
    with pytest.raises(FrameListError, match="both give frame number 50"):
        lister(folder)


def test_stray_image_in_a_clip_folder_is_a_bad_frame_name(casme2_root: Path):
    folder = casme2_root / "CASME2_RAW_selected" / "sub01" / "EP02_01f"
    (folder / "cover.jpg").write_bytes((folder / "img50.jpg").read_bytes())
    reason, msg = fails(get_adapter("casme2", casme2_root).scan())["sub01/EP02_01f"]
    assert reason == "bad_frame_name" and "cover.jpg" in msg and "move non-frame images" in msg


def test_split_list_bad_inputs(tmp_path: Path):
    """FERV39k: a list path leaving the clip folder, a clip the lists label twice, frame numbers twice."""
    root = tmp_path / "FERV39k"
    clips = root / "2_ClipsforFaceCrop"
    frames(clips / "Action/Happy/0001", range(1, 4))
    frames(clips / "Action/Sad/0002", range(1, 4))
    (clips / "Action/Sad/0002/img0001.jpg").write_bytes(b"x")  # img1.jpg and img0001.jpg
    frames(tmp_path / "secret/0003", range(1, 4))
    frames(clips / "Crime/Angry/0004", range(1, 4))
    setups = root / "4_setups/All_scenes"
    setups.mkdir(parents=True)
    (setups / "train_All.csv").write_text(
        "Action/Happy/0001 Happy\nAction/Sad/0002 Sad\n../../secret/0003 Fear\nCrime/Angry/0004 Angry\n"
    )
    (setups / "test_All.csv").write_text("Action/Happy/0001 Sad\n")
    scan = get_adapter("ferv39k", root).scan()
    assert [c.clip_id for c in scan.clips] == ["Crime/Angry/0004"]
    f = fails(scan)
    assert (
        f["Action/Happy/0001"][0] == "label_conflict" and "test_All.csv line 1" in f["Action/Happy/0001"][1]
    )
    assert f["Action/Sad/0002"][0] == "duplicate_frame_number"
    assert f["../../secret/0003"][0] == "path_outside_source" and len(f) == 3
