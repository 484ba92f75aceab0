"""Adapters of the micro-expression datasets, on generated fixtures that copy each official layout:
file names, header rows, sheets, folder and frame naming -- including the known quirk rows.

Frames are tiny 8x8 JPEGs (adapters never decode pixels); every failure must name the annotation
file and row, and a wrong or missing annotation file must raise with the file, the row and the fix.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from openpyxl import Workbook

from mepipe.config import load_config
from mepipe.datasets import ADAPTERS, get_adapter
from mepipe.datasets.base import ScanResult
from mepipe.errors import AnnotationError, ConfigError

JPG = cv2.imencode(".jpg", np.zeros((8, 8), np.uint8))[1].tobytes()
PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


def frames(folder: Path, numbers, name=lambda k: f"img{k}.jpg") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k in numbers:
        (folder / name(k)).write_bytes(JPG)


def workbook(path: Path, sheets: dict[str, list[list | None]]) -> Path:
    """Write an .xlsx; ``None`` rows are left blank (so Excel row numbers are exact)."""
    wb = Workbook()
    wb.remove(wb.active)
    for title, rows in sheets.items():
        ws = wb.create_sheet(title)
        for i, row in enumerate(rows, start=1):
            for j, v in enumerate(row or [], start=1):
                if v is not None:
                    ws.cell(row=i, column=j, value=v)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def by_id(scan: ScanResult) -> dict:
    return {c.clip_id: c for c in scan.clips}


def failures(scan: ScanResult) -> dict[str, tuple]:
    """clip id (or row<N>) -> (reason, message, row)."""
    return {i.clip_id: (i.reason, i.message, i.row) for _, i in scan.failures}


# ----------------------------------------------------------------------------------------------- SAMM
SAMM_HEADER = [
    "Subject",
    "Filename",
    "Inducement Code",
    "Onset Frame",
    "Apex Frame",
    "Offset Frame",
    "Duration",
    "Micro",
    "Action Units",
    "Estimated Emotion",
    "Objective Classes",
    "Notes",
]
SAMM_ROWS = [
    [6, "006_1_2", 1, 5562, 5570, 5580, 19, "Micro", "R12", "Happiness", "I", None],  # good (folder wider)
    [6, "006_1_3", 1, 100, -1, 110, 11, "Micro", "4+7", "Anger", "III", None],  # apex missing (-1)
    [7, "007_3_1", 3, 100, 200, 110, 11, "Micro", "14", "Contempt", "IV", None],  # apex outside clip
    [7, "007_5_3", 5, 10, 12, 20, 11, "Micro", "1+2", "Surprise", "II", None],  # no frame folder
    ["seven", "007_6_1", 6, 10, 12, 20, 11, "Micro", "12", "Happiness", "I", None],  # bad subject
    [7, "007_6_2", 6, 10, 12, 20, 11, "Micro", "12", "Others", "VII", None],  # frame gap
]


def samm_frames(root: Path) -> None:
    name = {"006": lambda k: f"006_{k:05d}.jpg", "007": lambda k: f"007_{k:05d}.jpg"}
    frames(root / "SAMM/006/006_1_2", range(5560, 5583), name["006"])
    frames(root / "SAMM/006/006_1_3", range(100, 111), name["006"])
    frames(root / "SAMM/007/007_3_1", range(100, 111), name["007"])
    frames(root / "SAMM/007/007_6_2", [k for k in range(10, 21) if k != 15], name["007"])


def samm_v2(root: Path, rows=SAMM_ROWS, header=SAMM_HEADER) -> Path:
    """Current copy: 12 rows of prose (with blank lines) above the header on Excel row 13."""
    prose: list[list | None] = [["SAMM micro-movement FACS codes"], None, ["Frame numbers are absolute."]]
    prose += [None] * 9
    return workbook(root / "SAMM_Micro_FACS_Codes_v2.xlsx", {"Sheet1": [*prose, header, *rows]})


def test_samm_v2_header_on_row_13(tmp_path):
    samm_frames(tmp_path)
    sheet = samm_v2(tmp_path)
    scan = get_adapter("samm", tmp_path).scan()
    clips = by_id(scan)
    assert sorted(clips) == ["006/006_1_2", "006/006_1_3"]
    c = clips["006/006_1_2"]
    assert (c.subject, c.onset, c.apex, c.offset, c.emotion_raw, c.aus_raw) == (
        "006",
        5562,
        5570,
        5580,
        "Happiness",
        "R12",
    )
    assert c.frame_numbers == tuple(range(5562, 5581))  # cut to onset..offset
    assert c.frame_files[0] == "006_05562.jpg" and c.fps == 200.0
    assert (
        c.extra["coding_file"] == sheet.name
        and c.extra["row"] == "14"
        and c.extra["objective_classes"] == "I"
    )
    assert clips["006/006_1_3"].apex is None and clips["006/006_1_3"].keyframe_source == "apex_missing"
    fails = failures(scan)
    assert fails["007/007_3_1"][0] == "apex_outside_clip" and fails["007/007_3_1"][2] == 16
    assert fails["007/007_5_3"][0] == "missing_folder" and f"{sheet} row 17" in fails["007/007_5_3"][1]
    assert fails["row18"][0] == "bad_subject" and "row 18" in fails["row18"][1]
    assert fails["007/007_6_2"][0] == "missing_frames" and "row 19" in fails["007/007_6_2"][1]
    assert len(scan.clips) + len(scan.failures) == len(SAMM_ROWS)  # nothing dropped silently


def test_samm_older_copy_single_header_is_detected(tmp_path):
    samm_frames(tmp_path)
    workbook(tmp_path / "SAMM_20181215_Micro_FACS_Codes_v2.xlsx", {"Sheet1": [SAMM_HEADER, *SAMM_ROWS]})
    scan = get_adapter("samm", tmp_path).scan()
    assert sorted(by_id(scan)) == ["006/006_1_2", "006/006_1_3"]
    assert by_id(scan)["006/006_1_2"].extra["row"] == "2"
    assert failures(scan)["007/007_3_1"][2] == 4


def test_samm_missing_or_wrong_annotation_names_file_row_and_fix(tmp_path):
    samm_frames(tmp_path)
    with pytest.raises(AnnotationError, match=r"annotation file not found.*dataset.options.annotation"):
        get_adapter("samm", tmp_path).scan()
    # A sheet without any header row: names the file and the rows searched.
    bad = workbook(tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx", {"Sheet1": [["just prose"], [1, 2, 3]]})
    with pytest.raises(AnnotationError) as err:
        get_adapter("samm", tmp_path).scan()
    assert (
        str(bad) in str(err.value)
        and "rows 1..2" in str(err.value)
        and "dataset.options.annotation" in str(err.value)
    )
    # A header on row 13 that lacks a column: names the file, the row and the missing column.
    header = [h for h in SAMM_HEADER if h != "Apex Frame"]
    samm_v2(tmp_path, rows=[r[:4] + r[5:] for r in SAMM_ROWS], header=header)
    with pytest.raises(AnnotationError, match=r"header row 13 lacks column\(s\) \['Apex Frame'\]"):
        get_adapter("samm", tmp_path).scan()


def test_fix_table_is_applied_and_recorded(tmp_path):
    samm_frames(tmp_path)
    samm_v2(tmp_path)
    table = tmp_path / "fixes.yaml"
    table.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "fixes": [
                    {
                        "id": "samm-007-007_3_1-apex",
                        "subject": "007",
                        "filename": "007_3_1",
                        "set": {"apex": 105},
                        "reason": "apex outside the clip",
                    },
                    {
                        "id": "samm-006-006_1_3-drop",
                        "subject": "006",
                        "filename": "006_1_3",
                        "set": {"drop": True},
                        "reason": "test drop",
                    },
                ],
            }
        )
    )
    scan = get_adapter("samm", tmp_path, fixes=str(table)).scan()
    clips = by_id(scan)
    assert clips["007/007_3_1"].apex == 105 and clips["007/007_3_1"].fixes == ("samm-007-007_3_1-apex",)
    assert "006/006_1_3" not in clips and clips["006/006_1_2"].fixes == ()


# ----------------------------------------------------------------------------------------------- MMEW
def test_mmew_emotion_folders_and_label_conflict(tmp_path):
    base = tmp_path / "MMEW/Micro_Expression"
    frames(base / "happiness/S01-01-001", range(1, 31), lambda k: f"{k}.jpg")
    frames(base / "surprise/S01-02-003", range(1, 21), lambda k: f"{k}.jpg")  # sheet says others
    frames(base / "others/S02-01-001", range(1, 21), lambda k: f"{k}.jpg")
    header = [
        "Subject",
        "Filename",
        "OnsetFrame",
        "ApexFrame",
        "OffsetFrame",
        "Action Units",
        "Estimated Emotion",
        "remarks",
    ]
    sheet = workbook(
        tmp_path / "MMEW_Micro_Exp.xlsx",
        {
            "Sheet1": [
                header,
                ["S1", "S01-01-001", 1, 12, 30, "6+12", "happiness", "fine"],
                [1, "S01-02-003", 1, 8, 20, "1+2", "others", None],
                ["S02", "S02-01-001", 1, "/", 20, "4", "others", None],
                ["S02", "S02-09-009", 1, 5, 20, "4", "fear", None],
            ]
        },
    )
    scan = get_adapter("mmew", tmp_path).scan()
    clips = by_id(scan)
    assert sorted(clips) == ["S01/S01-01-001", "S02/S02-01-001"]
    assert clips["S01/S01-01-001"].extra["remarks"] == "fine" and clips["S01/S01-01-001"].fps == 90.0
    assert clips["S02/S02-01-001"].apex is None
    fails = failures(scan)
    reason, msg, row = fails["S01/S01-02-003"]
    assert reason == "label_conflict" and row == 3 and str(sheet) in msg and "'surprise'" in msg
    assert fails["S02/S02-09-009"][0] == "missing_folder"


# ----------------------------------------------------------------------------------------------- SMIC
def smic_tree(root: Path, variant: str = "HS") -> None:
    name = lambda k: f"image{k:06d}.bmp"  # noqa: E731
    frames(root / variant / "s1/micro/negative/s1_ne_01", range(90823, 90841), name)
    frames(root / variant / "s1/micro/positive/s1_po_01", range(1000, 1020), name)
    frames(root / variant / "s2/micro/surprise/s2_sur_01", range(50, 70), name)
    frames(root / variant / "s2/micro/happy/s2_ha_01", range(50, 70), name)  # not a SMIC label
    frames(root / variant / "s2/micro/negative/s2_ne_01", [1, 2, 4], name)  # frame gap
    (root / variant / "notes").mkdir()  # not a subject


def test_smic_labels_from_folders_no_apex(tmp_path):
    smic_tree(tmp_path)
    scan = get_adapter("smic", tmp_path).scan()
    clips = by_id(scan)
    assert sorted(clips) == ["s01/s1_ne_01", "s01/s1_po_01", "s02/s2_sur_01"]
    c = clips["s01/s1_ne_01"]
    assert (c.subject, c.emotion_raw, c.onset, c.apex, c.offset) == ("s01", "negative", 90823, None, 90840)
    assert c.keyframe_source == "folder_bounds" and c.fps == 100.0 and c.extra["variant"] == "HS"
    fails = failures(scan)
    assert fails["s02/s2_ha_01"][0] == "unknown_label"
    assert fails["s02/s2_ne_01"][0] == "missing_frames"
    assert fails["notes"][0] == "bad_subject"


def test_smic_vis_variant_fps(tmp_path):
    smic_tree(tmp_path / "SMIC_all_raw", "VIS")
    scan = get_adapter("smic", tmp_path, variant="vis").scan()
    assert {c.fps for c in scan.clips} == {25.0} and {c.extra["variant"] for c in scan.clips} == {"VIS"}
    with pytest.raises(ConfigError, match="variant"):
        get_adapter("smic", tmp_path, variant="XX").scan()


# ----------------------------------------------------------------------------------------- CAS(ME)^2
def casme_sq_root(root: Path) -> Path:
    frames(root / "rawpic/s15/15_0101disgustingteeth", range(1, 301))
    frames(root / "rawpic/s16/16_0102eatingworms", range(1, 201))
    return workbook(
        root / "CAS(ME)^2code_final.xlsx",
        {
            "CASFEcode_final": [  # headerless, positional
                [1, "disgust1_1", 10, 15, 20, "4+7", "negative", "micro-expression", "disgust"],
                [1, "disgust1_2", 100, 130, 180, "9", "negative", "macro-expression", "disgust"],
                [1, "disgust1_3", 200, 210, 0, "12", "positive", "macro-expression", "happy"],  # offset 0
                [2, "disgust2_1", 5, 8, 12, "4", "negative", "micro-expression", "disgust"],
                [2, "anger9_1", 5, 8, 12, "4", "negative", "micro-expression", "anger"],  # no stimulus
                [9, "disgust1_1", 5, 8, 12, "4", "negative", "micro-expression", "anger"],  # no subject
                [1, "disgust1_4", 5, 8, 12, "4", "negative", "mini-expression", "anger"],  # bad type
                [1, "disgust1_5", 250, 0, 0, "4", "negative", "macro-expression", "anger"],  # no end
            ],
            "naming rule1": [["casme_015", 15, 1], ["casme_016", 16, 2]],
            "naming rule2": [["0101", "disgust1"], [102, "disgust2"]],  # 0102 stored as a number
        },
    )


def test_casme_sq_sheets_micro_and_macro(tmp_path):
    sheet = casme_sq_root(tmp_path)
    scan = get_adapter("casme_sq", tmp_path).scan()
    clips = by_id(scan)
    assert sorted(clips) == ["s15/disgust1_1", "s15/disgust1_2", "s15/disgust1_3", "s16/disgust2_1"]
    micro = clips["s15/disgust1_1"]
    assert (
        micro.expression_type == "micro" and micro.frame_numbers == tuple(range(10, 21)) and micro.fps == 30.0
    )
    assert micro.source_path.endswith("rawpic/s15/15_0101disgustingteeth")
    assert clips["s15/disgust1_2"].expression_type == "macro"
    open_end = clips["s15/disgust1_3"]
    assert open_end.offset is None and "unknown" in open_end.extra["offset"]
    assert open_end.frame_numbers == tuple(range(200, 211))  # cut at the apex
    assert clips["s16/disgust2_1"].extra["video_code"] == "0102"
    fails = {i.row: (i.reason, i.message) for _, i in scan.failures}
    assert fails[5][0] == "bad_value" and "naming rule2" in fails[5][1] and f"{sheet} row 5" in fails[5][1]
    assert fails[6][0] == "bad_subject" and "naming rule1" in fails[6][1]
    assert fails[7][0] == "bad_value" and "mini-expression" in fails[7][1]
    assert fails[8][0] == "bad_value" and "no end" in fails[8][1]
    macro_only = get_adapter("casme_sq", tmp_path, types="macro").scan()
    assert {c.expression_type for c in macro_only.clips} == {"macro"}


def test_casme_sq_missing_naming_sheets(tmp_path):
    workbook(
        tmp_path / "CAS(ME)^2code_final.xlsx",
        {"CASFEcode_final": [[1, "a_1", 1, 2, 3, "", "x", "micro-expression"]]},
    )
    (tmp_path / "rawpic").mkdir()
    with pytest.raises(AnnotationError, match=r"naming rule1"):
        get_adapter("casme_sq", tmp_path).scan()


# ----------------------------------------------------------------------------------------- CAS(ME)^3
def test_casme3_a_repeated_filenames_and_case_mismatch(tmp_path):
    base = tmp_path / "part_A/data/part_A_split/part_A"
    frames(base / "spNo.1/a/color", range(1, 400), lambda k: f"{k}.jpg")  # folder spelled spNo.
    frames(base / "spNO.2/b/color", range(1, 100), lambda k: f"{k}.jpg")
    header = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]
    workbook(
        tmp_path / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
        {
            "Sheet1": [
                header,
                ["spNO.1", "a", 10, 15, 20, "4", "III", "disgust"],
                ["spNO.1", "a", 100, 104, 110, "12", "I", "happy"],
                ["spNO.1", "a", 300, 305, 312, "1+2", "II", "surprise"],
                ["spNO.2", "b", 50, 40, 60, "14", "VII", "anger"],  # dead apex
            ]
        },
    )
    scan = get_adapter("casme3_a", tmp_path).scan()
    clips = by_id(scan)
    assert sorted(clips) == ["spNO.1/a", "spNO.1/a2", "spNO.1/a3"]
    assert clips["spNO.1/a2"].frame_numbers == tuple(range(100, 111))
    assert (
        clips["spNO.1/a2"].extra["folder"] == "a" and clips["spNO.1/a2"].extra["subject_folder"] == "spNo.1"
    )
    assert clips["spNO.1/a"].extra["objective_class"] == "III"
    assert failures(scan)["spNO.2/b"][0] == "apex_outside_clip"


def test_casme3_a_expression_type_column(tmp_path):
    frames(tmp_path / "part_A/spNO.3/c/color", range(1, 50), lambda k: f"{k}.jpg")
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
    workbook(
        tmp_path / "CAS(ME)3_part_A_v2.xlsx",
        {
            "Sheet1": [
                header,
                ["spNO.3", "c", 1, 3, 6, "4", "III", "disgust", "Micro-expression"],
                ["spNO.3", "c", 10, 20, 40, "12", "I", "happy", "Macro-expression"],
                ["spNO.3", "c", 10, 20, 40, "12", "I", "happy", "Nano-expression"],
            ]
        },
    )
    scan = get_adapter("casme3_a", tmp_path).scan()
    assert {c.clip_id: c.expression_type for c in scan.clips} == {"spNO.3/c": "micro", "spNO.3/c2": "macro"}
    assert failures(scan)["spNO.3/c3"][0] == "bad_value"


def test_casme3_c_no_apex_no_emotion(tmp_path):
    frames(tmp_path / "ME_C/01/3/color", range(1, 40), lambda k: f"{k}.jpg")
    workbook(
        tmp_path / "CAS(ME)3_part_C_ME.xlsx",
        {"Sheet1": [["sub", "count", "au", "onset", "offset"], [1, 3, "4,7", 5, 25], [2, 1, "12", 1, 9]]},
    )
    scan = get_adapter("casme3_c", tmp_path).scan()
    c = by_id(scan)["01/3"]
    assert (c.apex, c.emotion_raw, c.aus_raw, c.keyframe_source) == (None, "", "4,7", "apex_missing")
    assert failures(scan)["02/1"][0] == "missing_folder"


# ---------------------------------------------------------------------------------------------- SAMM-LV
def test_samm_lv_preamble_types_and_emotions(tmp_path):
    # one long recording; only the annotated stretches are written (listing is what the adapter does)
    for span in (range(90, 310), range(990, 1050), range(1990, 2020)):
        frames(tmp_path / "SAMM_longvideos/006_1", span, lambda k: f"006_1_{k:04d}.jpg")
    preamble: list[list | None] = [["SAMM Long Videos"], None, ["Onset/Apex/Offset are frame numbers"]] + [
        None
    ] * 6
    header = [
        "Subject",
        "Filename",
        "Inducement Code",
        "Onset",
        "Apex",
        "Offset",
        "Duration",
        "Type",
        "Action Units",
        "Notes",
    ]
    sheet = workbook(
        tmp_path / "SAMM_LongVideos_V2_Release.xlsx",
        {
            "Sheet1": [
                *preamble,
                header,
                [6, "006_1_1", 1, 100, 150, 300, 201, "Macro", "12", None],
                [6, "006_1_2", 1, 1000, -1, 1040, 41, "Micro - 1/2", "4", None],
                [6, "006_1_3", 1, 2000, 2010, -1, 0, "Micro - 1/2", "4", None],
                [6, "006_1_4", 1, 2500, 2510, 2520, 21, "Blink", "45", None],
            ]
        },
    )
    workbook(
        tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx",
        {
            "Sheet1": [
                SAMM_HEADER,
                [6, "006_1_2", 1, 1000, 1020, 1040, 41, "Micro", "4", "Anger", "III", None],
            ]
        },
    )
    scan = get_adapter("samm_lv", tmp_path, emotions="SAMM_Micro_FACS_Codes_v2.xlsx").scan()
    clips = by_id(scan)
    assert clips["006/006_1_1"].expression_type == "macro" and clips["006/006_1_1"].extra["row"] == "11"
    assert clips["006/006_1_2"].expression_type == "micro" and clips["006/006_1_2"].emotion_raw == "Anger"
    assert clips["006/006_1_2"].apex is None and len(clips["006/006_1_2"].frame_files) == 41
    assert clips["006/006_1_3"].offset is None and "unknown" in clips["006/006_1_3"].extra["offset"]
    assert clips["006/006_1_3"].frame_numbers[-1] == 2010
    reason, msg, row = failures(scan)["006/006_1_4"]
    assert (reason, row) == ("bad_value", 14) and str(sheet) in msg


# ------------------------------------------------------------------------------------------------- 4DME
def test_fourdme_multilabel_columns(tmp_path):
    frames(tmp_path / "gray_micro/S01/S01_fold1", range(30, 61), lambda k: f"{k}.jpg")
    frames(tmp_path / "gray_micro/3/x3", range(1, 11), lambda k: f"{k}.jpg")
    header = [
        "sub_ID",
        "fold_name",
        "Emotion",
        "Onset",
        "Apex",
        "Offset",
        "AUs",
        "Positive",
        "Negative",
        "Surprise",
    ]
    workbook(
        tmp_path / "4DME_Labelling_Micro_release v1.xlsx",
        {
            "Sheet1": [
                header,
                ["S01", "S01_fold1", "Surprise", 30, 40, 60, "AU1+AU2(k)", 0, 0, 1],
                [3, "x3", "Negative", 1, 5, 10, "AU4", 0, 1, 0],
                ["S01", "S01_fold9", "Negative", 1, 5, 10, "AU4", 0, 1, 0],
            ]
        },
    )
    scan = get_adapter("fourdme", tmp_path).scan()
    clips = by_id(scan)
    c = clips["S01/S01_fold1"]
    assert c.aus_raw == "AU1+AU2(k)" and c.extra["multi_surprise"] == "1" and c.fps == 60.0
    assert clips["03/x3"].source_path.endswith("gray_micro/3/x3")
    assert failures(scan)["S01/S01_fold9"][0] == "missing_folder"


# --------------------------------------------------------------------------------------------- registry
def test_every_pipeline_names_a_registered_adapter():
    for p in sorted(PIPELINES.glob("*.yaml")):
        cfg = load_config(p)
        assert cfg.dataset.adapter in ADAPTERS, p
    for name in (
        "samm",
        "mmew",
        "smic",
        "casme_sq",
        "casme3_a",
        "casme3_c",
        "samm_lv",
        "fourdme",
        "composite",
    ):
        assert (PIPELINES / f"{name if name != 'composite' else 'megc2019'}.yaml").is_file()


# -------------------------------------------------------------------------------------------- composite
CASME2_HEADER = [
    "Subject",
    "Filename",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Action Units",
    "Estimated Emotion",
]


def megc_root(root: Path) -> Path:
    """CASME2/ + SAMM/ + SMIC/ under one folder, as the megc2019 rule expects."""
    c2 = root / "CASME2"
    rows = [
        [1, "EP02_01f", 46, 59, 86, "12", "happiness"],
        [1, "EP03_02", 10, 15, 20, "4", "disgust"],
        [1, "EP04_02", 10, 15, 20, "4", "others"],  # not in megc2019_3
        [4, "EP12_01f", 10, 15, 20, "4", "repression"],  # excluded by the rule
        [4, "EP13_06f", 10, 15, 20, "1+2", "surprise"],
        [5, "EP01_01", 10, 15, 20, "4", "fear"],  # CASME II fear: not in megc2019_3
    ]
    workbook(c2 / "CASME2-coding-20140508.xlsx", {"Sheet1": [CASME2_HEADER, *rows]})
    for subject, filename, on, _, off, _, _ in rows:
        frames(c2 / f"CASME2_RAW_selected/sub{subject:02d}/{filename}", range(on, off + 1))
    samm_frames(root / "SAMM")
    samm_v2(root / "SAMM")
    smic_tree(root / "SMIC")
    return root


def test_composite_megc2019_rule_resolves_and_accounts_for_every_clip(tmp_path):
    megc_root(tmp_path)
    with pytest.warns(UserWarning, match="expected counts"):  # a fixture is not the 442-clip set
        scan = get_adapter("composite", tmp_path, rule="megc2019").scan()
    keys = sorted(c.key for c in scan.clips)
    assert keys == [  # the clips of the fixture that the official list names, with its labels
        "casme2/sub01/EP02_01f",
        "samm/006/006_1_3",
        "smic/s01/s1_ne_01",
        "smic/s01/s1_po_01",
        "smic/s02/s2_sur_01",
    ]
    assert {c.subject_key for c in scan.clips} >= {"casme2/sub01", "samm/006", "smic/s01"}
    excluded = {i.clip_id: i.message for _, i in scan.failures if i.reason == "excluded_by_composite"}
    assert "not in the megc2019 clip list" in excluded["sub04/EP12_01f"]
    assert {"sub01/EP04_02", "sub05/EP01_01", "sub01/EP03_02"} <= set(excluded)
    # the list labels sub04/EP13_06f and 006_1_2 negative; the fixture sheets say surprise, Happiness
    conflicts = {i.clip_id: i.message for _, i in scan.failures if i.reason == "label_conflict"}
    assert set(conflicts) == {"sub04/EP13_06f", "006/006_1_2"}
    assert "labels casme2/sub04/EP13_06f negative" in conflicts["sub04/EP13_06f"]


def test_composite_custom_rule_counts_match_or_report(tmp_path):
    from mepipe.composites import check_composite, load_composite

    megc_root(tmp_path)
    rule = {
        "name": "mini",
        "scheme": "megc2019_3",
        "members": [
            {"dataset": "casme2", "source": "CASME2"},
            {"dataset": "smic", "source": "SMIC", "options": {"variant": "HS"}},
        ],
        "exclude": [{"key": "casme2/sub04/EP12_01f", "reason": "test"}],
        "expected": {
            "total": 6,
            "subjects": 4,
            "classes": {"negative": 2, "positive": 2, "surprise": 2},
            "datasets": {
                "casme2": {"total": 3, "negative": 1, "positive": 1, "surprise": 1, "subjects": 2},
                "smic": {"total": 3, "subjects": 2},
            },
        },
    }
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump(rule))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the counts match: no warning
        scan = get_adapter("composite", tmp_path, rule=str(path)).scan()
    assert len(scan.clips) == 6 and check_composite(load_composite(str(path)), scan.clips) == []
    rule["expected"]["datasets"]["casme2"]["negative"] = 5
    path2 = tmp_path / "mini2.yaml"
    path2.write_text(yaml.safe_dump(rule))
    with pytest.raises(ConfigError, match=r"casme2 negative is 1, expected 5"):
        get_adapter("composite", tmp_path, rule=str(path2), check="raise").scan()


def test_composite_without_rule_and_config_errors(tmp_path):
    megc_root(tmp_path)
    scan = get_adapter(
        "composite",
        tmp_path,
        datasets=[{"adapter": "casme2", "source": "CASME2"}, {"adapter": "smic", "source": "SMIC"}],
    ).scan()
    assert {c.dataset for c in scan.clips} == {"casme2", "smic"} and len(scan.clips) == 9
    with pytest.raises(ConfigError, match="same|twice|once"):
        get_adapter(
            "composite",
            tmp_path,
            datasets=[{"adapter": "smic", "source": "SMIC"}, {"adapter": "smic", "source": "SMIC"}],
        ).scan()
    with pytest.raises(ConfigError, match="rule"):
        get_adapter("composite", tmp_path).scan()
    with pytest.raises(ConfigError, match="unknown composite"):
        get_adapter("composite", tmp_path, rule="nope").scan()


# ---------------------------------------------------------------------------------------- synth, e2e
@pytest.mark.slow
def test_synth_samm_builds_end_to_end(tmp_path):
    synth = pytest.importorskip(
        "mepipe.synth", reason="mepipe.synth (the synthetic layouts) is not there yet"
    )
    if "samm" not in synth.LAYOUTS:
        pytest.skip("mepipe.synth has no samm layout yet")
    from mepipe.build import build_dataset
    from mepipe.shards.manifest import read_manifest

    src = synth.synthesize("samm", tmp_path / "samm", subjects=1, clips_per_subject=1, seed=0).out
    cfg = load_config(PIPELINES / "samm.yaml", {"align.crop_size": 64})
    summary = build_dataset(cfg, src, tmp_path / "out")
    rows = read_manifest(tmp_path / "out")
    assert summary.clips_ok == 1, [(r.reason, r.message) for r in rows]
    assert rows[0].dataset == "samm" and rows[0].subject == "006" and rows[0].fps == 200.0
