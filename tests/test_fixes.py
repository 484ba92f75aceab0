"""Row-anchored annotation fixes: the shipped tables (MEB's corrections) on fixture sheets built to
match them, a shifted sheet that must not receive them, and every outcome of the anchor checks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from mepipe.datasets import get_adapter
from mepipe.datasets.anchors import STATUSES
from mepipe.datasets.base import ScanResult
from mepipe.datasets.fixes import load_fixes
from tests.test_adapters_me import SAMM_HEADER, frames, workbook

CASME2_HEADER = [
    "Subject",
    "Filename",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Action Units",
    "Estimated Emotion",
]
# MEB's CASME II corrections (tvaranka/meb@f731b0a, meb/datasets/datasets.py, Casme2): index -> apex
MEB_CASME2_APEX = dict(
    zip(
        [29, 35, 43, 45, 51, 53, 60, 117, 118, 126, 136, 147, 155, 168, 170, 177, 202, 203, 234, 237, 238],
        [279, 68, 77, 81, 166, 100, 78, 187, 89, 80, 88, 134, 231, 53, 329, 111, 91, 103, 98, 153, 98],
        strict=True,
    )
)


class Records(logging.Handler):
    """Collects the warnings of one logger."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.WARNING)
        self.logger, self.lines = logging.getLogger(name), []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def __enter__(self) -> Records:
        self.logger.addHandler(self)
        self.logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)


def report(scan: ScanResult) -> dict[str, tuple[str, str]]:
    """fix id -> (status, clip the row resolved to)."""
    return {o.fix_id: (o.status, f"{o.subject}/{o.filename}") for o in scan.fix_report}


def casme2_like_meb(root: Path, *, shift: int = 0) -> dict[int, str]:
    """A 240-row CASME II sheet whose rows hold what MEB's positions say: ``/`` apexes at MEB's 21
    indices (frames around MEB's estimate), and at index 60 an offset past MEB's 91. ``shift``
    blank-free rows inserted on top give a sheet of another version. Returns index -> clip id."""
    rows, ids = [], {}
    for k in range(shift):
        rows.append([25, f"EX{k:02d}", 1, 2, 3, "4", "disgust"])
        frames(root / f"CASME2_RAW_selected/sub25/EX{k:02d}", range(1, 4))
    for i in range(240):
        subject, name = 1 + i // 10, f"EP{i:03d}"
        if i in MEB_CASME2_APEX:
            apex = MEB_CASME2_APEX[i]
            onset, offset = apex - 5, apex + 5
            if i == 60:  # MEB: "Mistake in file, change offset to 91"
                onset, offset = 70, 120
            rows.append([subject, name, onset, "/", offset, "12", "happiness"])
        else:
            onset, offset = 10, 14
            rows.append([subject, name, onset, 12, offset, "4", "disgust"])
        frames(root / f"CASME2_RAW_selected/sub{subject:02d}/{name}", range(onset, offset + 1))
        ids[i] = f"sub{subject:02d}/{name}"
    workbook(root / "CASME2-coding-20140508.xlsx", {"Sheet1": [CASME2_HEADER, *rows]})
    return ids


def test_shipped_casme2_fixes_apply_to_the_rows_they_point_at(tmp_path):
    ids = casme2_like_meb(tmp_path)
    scan = get_adapter("casme2", tmp_path).scan()
    assert not scan.failures
    got = report(scan)
    assert len(got) == 22 and {s for s, _ in got.values()} == {"applied"}
    assert got["meb-casme2-index29-apex"] == ("applied", ids[29])  # resolved to (subject, filename)
    clips = {c.clip_id: c for c in scan.clips}
    c29 = clips[ids[29]]
    assert (c29.apex, c29.keyframe_source, c29.fixes) == (279, "annotated", ("meb-casme2-index29-apex",))
    c60 = clips[ids[60]]  # two fixes on one row: the offset and the apex
    assert (c60.onset, c60.apex, c60.offset) == (70, 78, 91) and c60.frame_numbers[-1] == 91
    assert set(c60.fixes) == {"meb-casme2-index60-offset", "meb-casme2-index60-apex"}
    assert clips[ids[28]].fixes == () and clips[ids[28]].apex == 12
    assert all(o.file.endswith("CASME2-coding-20140508.xlsx") and o.source for o in scan.fix_report)


def test_shipped_casme2_fixes_leave_a_shifted_sheet_alone_and_say_so(tmp_path):
    ids = casme2_like_meb(tmp_path, shift=1)  # another version: every row one lower
    with Records("mepipe.datasets.anchors") as logged:
        scan = get_adapter("casme2", tmp_path).scan()
    got = report(scan)
    assert len(got) == 22 and {s for s, _ in got.values()} <= {"mismatch", "withheld"}
    assert got["meb-casme2-index29-apex"][0] == "mismatch"  # index 29 is now the row that was 28
    assert all(c.fixes == () for c in scan.clips)  # nothing applied anywhere
    assert {c.clip_id: c for c in scan.clips}[ids[29]].keyframe_source == "apex_missing"
    miss = next(o for o in scan.fix_report if o.fix_id == "meb-casme2-index29-apex")
    assert (miss.row, miss.expected, miss.found) == (31, {"apex": "missing"}, {"apex": "12"})
    assert "another version or a re-sorted sheet" in miss.message
    (line,) = logged.lines  # one warning for the group, naming the counts
    assert "22 fixes of group meb-casme2 not applied" in line and "mismatch" in line and "fix_report" in line
    json.dumps([o.as_dict() for o in scan.fix_report])  # build-info.json can hold it


def samm_like_meb(root: Path, *, older_copy: bool = False) -> dict[int, str]:
    """A 160-row SAMM sheet (header on Excel row 13, or 1 for the older copy) holding what MEB's
    positions say: AU alternatives ("or") at 15, 18, 41, 64, 154; apex -1 at 125, 132, 133; at 56
    an offset past the frames on disk (MEB sets 5739)."""
    rows, ids = [], {}
    for i in range(160):
        subject, name = 6 + i // 20, f"{6 + i // 20:03d}_{i}_1"
        onset, apex, offset, aus = 100, 104, 110, "4"
        if i in (15, 18, 41, 64, 154):
            aus = "R12 or R15"
        if i in (125, 132, 133):
            apex = -1
            onset, offset = {125: (1100, 1110), 132: (4940, 4950), 133: (5125, 5135)}[i]
        last = offset
        if i == 56:
            onset, apex, offset, last = 5700, 5720, 57390, 5739  # a typo: frames end at 5739
        rows.append([subject, name, 1, onset, apex, offset, 11, "Micro", aus, "Anger", "III", None])
        folder = root / f"SAMM/{subject:03d}/{name}"
        frames(folder, range(onset, last + 1), lambda k, s=subject: f"{s:03d}_{k:05d}.jpg")
        ids[i] = f"{subject:03d}/{name}"
    prose: list[list | None] = [] if older_copy else [["SAMM micro-movement FACS codes"], *[None] * 11]
    workbook(root / "SAMM_Micro_FACS_Codes_v2.xlsx", {"Sheet1": [*prose, SAMM_HEADER, *rows]})
    return ids


@pytest.mark.parametrize("older_copy", [False, True])
def test_shipped_samm_fixes_count_rows_under_the_detected_header(tmp_path, older_copy):
    ids = samm_like_meb(tmp_path, older_copy=older_copy)
    scan = get_adapter("samm", tmp_path).scan()
    got = report(scan)
    assert {s for s, _ in got.values()} == {"applied"}, got
    clips = {c.clip_id: c for c in scan.clips}
    assert clips[ids[15]].aus_raw == "R12 + R15" and clips[ids[154]].aus_raw == "R14A"
    assert clips[ids[125]].apex == 1105 and clips[ids[133]].apex == 5130
    # index 56 has no known original value: applied because the row as written does not build
    assert clips[ids[56]].offset == 5739 and clips[ids[56]].fixes == ("meb-samm-index56-offset",)
    assert len(scan.clips) == 160 and not scan.failures


def test_buildable_false_fix_is_not_applied_where_the_row_builds(tmp_path):
    ids = samm_like_meb(tmp_path)
    sheet = tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx"
    # a corrected copy: the offset of index 56 (Excel row 13 + 1 + 56) is fine already
    from openpyxl import load_workbook

    wb = load_workbook(sheet)
    wb.active.cell(row=70, column=6, value=5730)
    wb.save(sheet)
    scan = get_adapter("samm", tmp_path).scan()
    o = next(o for o in scan.fix_report if o.fix_id == "meb-samm-index56-offset")
    assert o.status == "not_needed" and o.unmatched and f"{o.subject}/{o.filename}" == ids[56]
    c = {c.clip_id: c for c in scan.clips}[ids[56]]
    assert c.offset == 5730 and c.fixes == ()


def mmew_rows(root: Path, broken: dict[int, tuple[int, int]]) -> None:
    """160 MMEW rows (frames 1..30; 1..120 for the ``broken`` ones: index -> (apex, offset) written)."""
    rows = []
    for i in range(160):
        name = f"S{1 + i // 10:02d}-{i:03d}"
        apex, offset = broken.get(i, (10, 20))
        rows.append([f"S{1 + i // 10:02d}", name, 1, apex, offset, "4", "happiness", None])
        n = 120 if i in broken else 30
        frames(root / "MMEW/Micro_Expression/happiness" / name, range(1, n + 1), lambda k: f"{k}.jpg")
    header = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units"]
    workbook(root / "MMEW_Micro_Exp.xlsx", {"Sheet1": [[*header, "Estimated Emotion", "remarks"], *rows]})


def test_shipped_mmew_fixes_apply_only_to_rows_that_do_not_build(tmp_path):
    # index 33: offset before the apex (MEB: apex 40, offset 75); 35: offset past the frames on disk
    # (MEB: 15, 54); 36: unbuildable either way (apex 0 < onset stays: MEB sets 46/59, frames end at 50)
    mmew_rows(tmp_path, {33: (40, 30), 35: (15, 500), 36: (0, 999)})
    for k in range(51, 121):
        (tmp_path / "MMEW/Micro_Expression/happiness/S04-036" / f"{k}.jpg").unlink()
    scan = get_adapter("mmew", tmp_path).scan()
    got = report(scan)
    assert got["meb-mmew-index33-apex-offset"] == ("applied", "S04/S04-033")
    assert got["meb-mmew-index35-apex-offset"][0] == "applied"
    assert got["meb-mmew-index36-apex-offset"][0] == "did_not_repair"
    assert {got[f"meb-mmew-index{i}-apex-offset"][0] for i in (37, 38, 142, 156)} == {"not_needed"}
    clips = {c.clip_id: c for c in scan.clips}
    assert (clips["S04/S04-033"].apex, clips["S04/S04-033"].offset) == (40, 75)
    assert (clips["S04/S04-035"].apex, clips["S04/S04-035"].offset) == (15, 54)
    assert clips["S04/S04-037"].offset == 20 and clips["S04/S04-037"].fixes == ()
    fails = {i.clip_id: i for _, i in scan.failures}
    assert fails["S04/S04-036"].reason == "apex_outside_clip"  # reported as written, not half-fixed


def test_anchor_checks_every_outcome(tmp_path):
    """A small table exercising each outcome: applied, already_correct, mismatch (value, order, no
    such row), withheld, other_file, skipped, and a keyed fix that matches no row (unused)."""
    casme2_like_meb(tmp_path)
    table = {
        "version": 2,
        "fixes": [
            {
                "id": "by-row",
                "anchor": {"row": 31},
                "expect": {"apex": "missing", "subject": "sub03"},
                "set": {"apex": 280},
                "reason": "t",
                "group": "g1",
            },
            {
                "id": "by-text",
                "anchor": {"index": 28},
                "expect": {"aus": {"contains": "4"}, "emotion": "Disgust", "filename": "EP028"},
                "set": {"emotion": "others"},
                "reason": "t",
            },
            {
                "id": "already",
                "anchor": {"index": 0},
                "expect": {"apex": "missing"},
                "set": {"apex": 12},
                "reason": "t",
            },
            {
                "id": "wrong-value",
                "anchor": {"index": 1},
                "expect": {"offset": 99},
                "set": {"apex": 11},
                "reason": "t",
                "group": "g2",
            },
            {
                "id": "same-group",
                "anchor": {"index": 2},
                "expect": {"offset": 14},
                "set": {"apex": 13},
                "reason": "t",
                "group": "g2",
            },
            {
                "id": "out-of-order",
                "anchor": {"index": 3},
                "expect": {"onset": 10},
                "set": {"apex": 99},
                "reason": "t",
            },
            {
                "id": "no-row",
                "anchor": {"index": 5000},
                "expect": {"apex": "missing"},
                "set": {"apex": 1},
                "reason": "t",
            },
            {
                "id": "other-file",
                "anchor": {"index": 4, "files": ["CASME2_label_Ver_2.xls"]},
                "expect": {"onset": 10},
                "set": {"apex": 13},
                "reason": "t",
            },
            {
                "id": "dropped",
                "anchor": {"index": 5},
                "expect": {"onset": 10},
                "set": {"drop": True},
                "reason": "t",
            },
            {
                "id": "keyed-unused",
                "subject": "sub99",
                "filename": "EP999",
                "set": {"apex": 1},
                "reason": "t",
            },
        ],
    }
    path = tmp_path / "fixes.yaml"
    path.write_text(yaml.safe_dump(table, sort_keys=False))
    scan = get_adapter("casme2", tmp_path, fixes=str(path)).scan()
    got = {o.fix_id: o for o in scan.fix_report}
    status = {k: o.status for k, o in got.items()}
    assert status == {
        "by-row": "applied",
        "by-text": "applied",
        "already": "already_correct",
        "wrong-value": "mismatch",
        "same-group": "withheld",
        "out-of-order": "mismatch",
        "no-row": "mismatch",
        "other-file": "other_file",
        "dropped": "applied",
        "keyed-unused": "unused",
    }
    assert set(status.values()) <= set(STATUSES)
    clips = {c.clip_id: c for c in scan.clips}
    assert clips["sub03/EP029"].apex == 280 and got["by-row"].subject == "sub03"
    assert clips["sub03/EP028"].emotion_raw == "others"
    assert clips["sub01/EP002"].apex == 12 and clips["sub01/EP003"].apex == 12  # untouched
    assert "sub01/EP005" not in clips and len(scan.clips) == 239  # dropped by an anchored fix
    assert "out of order" in got["out-of-order"].message and "g2" in got["same-group"].message
    assert "written for ['CASME2_label_Ver_2.xls']" in got["other-file"].message
    assert {o.fix_id for o in scan.fix_report if not o.unmatched} == {
        "by-row",
        "by-text",
        "already",
        "dropped",
    }


def test_fix_tables_name_source_and_reason_and_load():
    for dataset, n in (("casme2", 22), ("samm", 9), ("mmew", 16), ("casme3_a", 6)):
        table = load_fixes(dataset)
        assert len(table.anchored) == n and not table.keyed
        assert all(
            f.source.startswith("tvaranka/meb@f731b0a") and f.reason and f.group for f in table.anchored
        )
        assert all(f.expect for f in table.anchored)  # no fix is applied on position alone
    c3 = {f.id: f for f in load_fixes("casme3_a").anchored}
    assert c3["meb-casme3a-index128-apex"].values == {"apex": 123}  # MEB's current value (was 160)


def test_malformed_fix_tables_name_the_entry(tmp_path):
    from mepipe.errors import AnnotationError

    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\nfixes:\n  - {id: a, anchor: {index: 1, row: 3}, set: {apex: 1}, reason: r}\n")
    with pytest.raises(AnnotationError, match="exactly one of index"):
        load_fixes("casme2", str(bad))
    bad.write_text(
        "version: 2\nfixes:\n"
        "  - {id: a, anchor: {index: 1}, expect: {colour: red}, set: {apex: 1}, reason: r}\n"
    )
    with pytest.raises(AnnotationError, match=r"unknown field\(s\) \['colour'\]"):
        load_fixes("casme2", str(bad))
