"""Legacy Excel (.xls) coding files, read through xlrd: CASME2_label_Ver_2.xls, CAS(ME)3_part_A_v2.xls."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from mepipe.datasets import get_adapter
from mepipe.datasets.sheets import read_table, sheet_names
from mepipe.errors import AnnotationError
from tests.conftest import CASME2_HEADER
from tests.test_adapters_me import frames
from tests.xls_writer import write_xls

CASME2_ROWS = [
    [1, "EP02_01f", None, 46, 51, 57, None, "4+7", "disgust"],
    [1, "EP03_02", None, 100, "/", 109, None, "12", "happiness"],
    [2, "EP05_03f", None, 8, 13, 19, None, "R12", "happiness"],
    [2, "EP06_01", None, 30, 35, 39, None, "1+2", "surprise"],
    [2, "EP07_04", None, 60, 75, 69, None, "14", "repression"],
    [3, "EP01_01", None, 5, 8, 12, None, "4", "others"],
    [3, "EP09_02", None, "x", 3, 4, None, "4", "others"],
]


def summary(scan):
    clips = sorted(
        (c.clip_id, c.onset, c.apex, c.offset, c.emotion_raw, c.aus_raw, c.frame_numbers) for c in scan.clips
    )
    return clips, sorted((i.clip_id, i.reason, i.row) for _, i in scan.failures)


def test_casme2_xls_reads_like_the_xlsx(casme2_root: Path):
    from_xlsx = summary(get_adapter("casme2", casme2_root).scan())
    (casme2_root / "CASME2-coding-20140508.xlsx").unlink()
    sheet = write_xls(casme2_root / "CASME2_label_Ver_2.xls", {"Sheet1": [CASME2_HEADER, *CASME2_ROWS]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no pandas engine deprecation: xlrd is used directly
        scan = get_adapter("casme2", casme2_root).scan()
    assert summary(scan) == from_xlsx
    assert [c.clip_id for c in scan.clips] == ["sub01/EP02_01f", "sub01/EP03_02", "sub02/EP05_03f"]
    assert {c.extra["row"] for c in scan.clips} == {"2", "3", "4"}
    bad = next(i for _, i in scan.failures if i.reason == "bad_value")
    assert f"{sheet} row 8" in bad.message and "OnsetFrame" in bad.message
    # the shipped CASME II anchors point past this 7-row sheet: reported, nothing applied
    assert len(scan.fix_report) == 22 and {o.status for o in scan.fix_report} == {"mismatch"}


def test_casme3_a_xls_with_expression_type(tmp_path: Path):
    base = tmp_path / "part_A/data/part_A_split/part_A"
    frames(base / "spNO.1/a/color", range(1, 400), lambda k: f"{k}.jpg")
    header = [
        "Subject",
        "Filename",
        "Onset",
        "Apex",
        "Offset",
        "AU",
        "Objective class",
        "emotion",
        "Expression type",
    ]
    write_xls(
        tmp_path / "CAS(ME)3_part_A_v2.xls",
        {
            "Sheet1": [
                header,
                ["spNO.1", "a", 10, 15, 20, "4", "III", "disgust", "Micro-expression"],
                ["spNO.1", "a", 100, 130, 180, "12", "I", "happy", "Macro-expression"],
                ["spNO.1", "a", 300, 305, 312, "1+2", "II", "surprise", "Micro-expression"],
            ]
        },
    )
    scan = get_adapter("casme3_a", tmp_path).scan()
    kinds = {c.clip_id: (c.expression_type, c.onset, c.extra["folder"]) for c in scan.clips}
    assert kinds == {
        "spNO.1/a": ("micro", 10, "a"),
        "spNO.1/a2": ("macro", 100, "a"),
        "spNO.1/a3": ("micro", 300, "a"),
    }
    # MEB's part A positions refer to the JpgIndex .xlsx; on the .xls none is applied
    assert len(scan.fix_report) == 6 and {o.status for o in scan.fix_report} == {"other_file"}
    assert all("cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx" in o.message for o in scan.fix_report)
    micro = get_adapter("casme3_a", tmp_path, types="micro").scan()
    assert [c.clip_id for c in micro.clips] == ["spNO.1/a", "spNO.1/a3"]


def test_xls_sheets_headers_and_bad_files(tmp_path: Path):
    path = write_xls(
        tmp_path / "two.xls",
        {
            "code": [["prose"], [], ["Subject", None, "Onset"], [6, "x", 5562.0], [7, "y", 1.5]],
            "rules": [["a", 1]],
        },
    )
    assert sheet_names(path) == ["code", "rules"]
    df = read_table(path, header_row=3)
    assert list(df.columns) == ["Subject", "Unnamed: 1", "Onset"]
    assert df.to_dict("records") == [
        {"Subject": 6, "Unnamed: 1": "x", "Onset": 5562},
        {"Subject": 7, "Unnamed: 1": "y", "Onset": 1.5},
    ]
    assert read_table(path, header_row=None, sheet="rules").iloc[0].tolist() == ["a", 1]
    broken = tmp_path / "broken.xls"
    broken.write_bytes(path.read_bytes()[:600])
    with pytest.raises(AnnotationError, match=r"broken\.xls: cannot be read as a spreadsheet"):
        read_table(broken)
    with pytest.raises(AnnotationError, match="cannot be read"):
        read_table(path, sheet="missing")
