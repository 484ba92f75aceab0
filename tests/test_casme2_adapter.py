from pathlib import Path

import pandas as pd
import pytest

from mepipe.datasets import ADAPTERS, get_adapter
from mepipe.datasets.base import frame_number, list_frames
from mepipe.errors import AnnotationError, ConfigError
from tests.conftest import write_casme2_sheet


def test_sheet_has_the_real_casme2_columns(casme2_root: Path):
    df = pd.read_excel(casme2_root / "CASME2-coding-20140508.xlsx")
    assert list(df.columns) == [
        "Subject",
        "Filename",
        "Unnamed: 2",
        "OnsetFrame",
        "ApexFrame",
        "OffsetFrame",
        "Unnamed: 6",
        "Action Units",
        "Estimated Emotion",
    ]


def test_frames_sort_numerically(tmp_path: Path):
    for k in (9, 10, 100, 46):
        (tmp_path / f"img{k}.jpg").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("ignored")
    names, nums = list_frames(tmp_path)
    assert names == ["img9.jpg", "img10.jpg", "img46.jpg", "img100.jpg"]
    assert nums == [9, 10, 46, 100]
    assert frame_number("006_05562.jpg") == 5562
    with pytest.raises(ValueError, match="no frame number"):
        frame_number("cover.jpg")


def test_scan_yields_clips_and_typed_issues(casme2_root: Path):
    scan = get_adapter("casme2", casme2_root).scan()
    clips = {c.clip_id: c for c in scan.clips}
    assert sorted(clips) == ["sub01/EP02_01f", "sub01/EP03_02", "sub02/EP05_03f"]
    good = clips["sub01/EP02_01f"]
    assert (good.onset, good.apex, good.offset) == (46, 51, 57)
    assert good.frame_numbers == tuple(range(46, 58))
    assert good.subject == "sub01" and good.key == "casme2/sub01/EP02_01f"
    assert good.emotion_raw == "disgust" and good.aus_raw == "4+7" and good.fps == 200.0
    assert good.extra["row"] == "2"
    # '/' apex: kept as missing, never guessed by the adapter
    slash = clips["sub01/EP03_02"]
    assert slash.apex is None and slash.keyframe_source == "apex_missing"
    assert clips["sub02/EP05_03f"].aus_raw == "R12"
    reasons = {issue.clip_id: issue.reason for _, issue in scan.failures}
    assert reasons == {
        "sub02/EP06_01": "missing_frames",
        "sub02/EP07_04": "apex_outside_clip",
        "sub03/EP01_01": "missing_folder",
        "sub03/EP09_02": "bad_value",
    }
    messages = {issue.clip_id: issue.message for _, issue in scan.failures}
    assert "33" in messages["sub02/EP06_01"]  # names the missing frame
    assert "row 8" in messages["sub03/EP09_02"] and "OnsetFrame" in messages["sub03/EP09_02"]


def test_interval_restricts_frames(casme2_root: Path, tmp_path: Path):
    write_casme2_sheet(
        casme2_root / "CASME2-coding-20140508.xlsx", [[1, "EP02_01f", None, 48, 50, 53, None, "4", "others"]]
    )
    (clip,) = get_adapter("casme2", casme2_root).scan().clips
    assert clip.frame_numbers == (48, 49, 50, 51, 52, 53)
    assert clip.frame_files[0] == "img48.jpg"


def test_fix_table_is_applied_and_recorded(casme2_root: Path, tmp_path: Path):
    fixes = tmp_path / "fixes.yaml"
    fixes.write_text(
        "version: 1\nfixes:\n"
        "  - {id: t-apex, subject: sub01, filename: EP03_02, set: {apex: 104}, reason: test fix}\n"
    )
    scan = get_adapter("casme2", casme2_root, fixes=str(fixes)).scan()
    clip = next(c for c in scan.clips if c.clip_id == "sub01/EP03_02")
    assert clip.apex == 104 and clip.fixes == ("t-apex",) and clip.keyframe_source == "annotated"


def test_wrong_or_missing_annotation_names_file_and_fix(casme2_root: Path):
    (casme2_root / "CASME2-coding-20140508.xlsx").unlink()
    with pytest.raises(AnnotationError, match="annotation file not found.*CASME2-coding-20140508.xlsx"):
        get_adapter("casme2", casme2_root).scan()
    bad = casme2_root / "CASME2-coding-20140508.xlsx"
    pd.DataFrame({"Subject": [1], "Filename": ["EP02_01f"], "Onset": [46]}).to_excel(bad, index=False)
    with pytest.raises(
        AnnotationError, match=r"lacks column\(s\) \['OnsetFrame'.*header row 1|header row 1 lacks"
    ):
        get_adapter("casme2", casme2_root).scan()


def test_unknown_option_and_missing_root_are_config_errors(tmp_path: Path, casme2_root: Path):
    with pytest.raises(ConfigError, match="unknown option"):
        get_adapter("casme2", casme2_root, colour=True)
    with pytest.raises(ConfigError, match="does not exist"):
        get_adapter("casme2", tmp_path / "nope")
    assert "casme2" in ADAPTERS
