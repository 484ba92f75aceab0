"""The MEGC2019 composite selects exactly the organisers' 442 clips, with their labels, from member
datasets laid out as distributed (subject ids ``sub01`` / ``6`` for ``006`` / ``s01``; SMIC folders
``s1_ne_01`` for the list's ``s01_ne_01``), plus clips the list does not name."""

from __future__ import annotations

import csv
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from mepipe import resources
from mepipe.composites import check_composite, composite_counts, list_key, load_composite
from mepipe.datasets import get_adapter
from tests.test_adapters_me import CASME2_HEADER, SAMM_HEADER, frames, samm_v2, workbook

EMOTION = {  # a raw emotion that megc2019_3 maps to each list label
    "casme2": {"0": "repression", "1": "happiness", "2": "surprise"},
    "samm": {"0": "Contempt", "1": "Happiness", "2": "Surprise"},
    "smic": {"0": "negative", "1": "positive", "2": "surprise"},
}


def listed() -> list[dict[str, str]]:
    with open(resources.find("lists", "megc2019"), newline="") as f:
        return list(csv.DictReader(f))


def megc_tree(root: Path, *, relabel: str = "", drop: str = "") -> None:
    """CASME2/, SAMM/, SMIC/HS/ holding every listed clip (3 frames each) and a few unlisted ones.
    ``relabel``: a listed filename given another class in its sheet; ``drop``: one left out."""
    c2_rows = [[4, "EP12_01f", 1, 2, 3, "4", "disgust"], [1, "EP04_02", 1, 2, 3, "4", "others"]]
    samm_rows = [[6, "006_9_9", 1, 1, 2, 3, 11, "Micro", "4", "Other", "VII", None]]
    for e in listed():
        ds, name, label = e["dataset"], e["filename"], e["label"]
        if name == drop:
            continue
        emotion = EMOTION[ds][str((int(label) + 1) % 3) if name == relabel else label]
        number = int("".join(ch for ch in e["subject"] if ch.isdigit()))
        if ds == "casme2":
            c2_rows.append([number, name, 1, 2, 3, "4", emotion])
            frames(root / f"CASME2/CASME2_RAW_selected/sub{number:02d}/{name}", range(1, 4))
        elif ds == "samm":
            samm_rows.append([number, name, 1, 1, 2, 3, 11, "Micro", "4", emotion, "I", None])
            frames(
                root / f"SAMM/SAMM/{number:03d}/{name}",
                range(1, 4),
                lambda k, n=number: f"{n:03d}_{k:05d}.jpg",
            )
        else:  # the distributed SMIC folders drop the padding: s1/micro/negative/s1_ne_01
            folder = name.replace(f"s{number:02d}_", f"s{number}_", 1)
            frames(
                root / f"SMIC/HS/s{number}/micro/{emotion}/{folder}",
                range(1, 4),
                lambda k: f"image{k:06d}.bmp",
            )
    for subject, name, *_ in c2_rows[:2]:
        frames(root / f"CASME2/CASME2_RAW_selected/sub{subject:02d}/{name}", range(1, 4))
    frames(root / "SAMM/SAMM/006/006_9_9", range(1, 4), lambda k: f"006_{k:05d}.jpg")
    frames(root / "SMIC/HS/s1/micro/negative/s1_ne_99", range(1, 4), lambda k: f"image{k:06d}.bmp")
    workbook(root / "CASME2/CASME2-coding-20140508.xlsx", {"Sheet1": [CASME2_HEADER, *c2_rows]})
    samm_v2(root / "SAMM", rows=samm_rows, header=SAMM_HEADER)


def test_the_official_list_is_selected_exactly_with_its_labels(tmp_path):
    megc_tree(tmp_path)
    rule = load_composite("megc2019")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every count matches: no mismatch warning
        scan = get_adapter("composite", tmp_path, rule="megc2019").scan()
    want = {list_key(e["dataset"], e["subject"], e["filename"]): e["label"] for e in listed()}
    got = {list_key(c.dataset, c.subject, c.clip_id.rsplit("/", 1)[-1]): c for c in scan.clips}
    assert set(got) == set(want) and len(scan.clips) == 442
    classes = ("negative", "positive", "surprise")
    assert all(rule.class_of(c) == classes[int(want[k])] for k, c in got.items())
    assert check_composite(rule, scan.clips) == []
    assert composite_counts(rule, scan.clips)["datasets"]["samm"] == rule.expected["datasets"]["samm"]
    ids = {c.key for c in scan.clips}
    assert {"casme2/sub05/EP12_03f", "samm/006/006_1_2", "smic/s01/s1_ne_01"} <= ids  # id formats
    excluded = {f"{i.dataset}/{i.clip_id}" for _, i in scan.failures if i.reason == "excluded_by_composite"}
    assert excluded == {
        "casme2/sub04/EP12_01f",
        "casme2/sub01/EP04_02",
        "samm/006/006_9_9",
        "smic/s01/s1_ne_99",
    }


def test_a_relabelled_or_missing_clip_is_reported(tmp_path):
    megc_tree(tmp_path, relabel="006_1_2", drop="EP12_03f")
    with pytest.warns(
        UserWarning,
        match=r"2 clip\(s\) of .*megc2019.csv are not among the resolved clips.*: "
        r"casme2/sub05/EP12_03f, samm/6/006_1_2",
    ):
        scan = get_adapter("composite", tmp_path, rule="megc2019").scan()
    assert len(scan.clips) == 440
    (conflict,) = [i for _, i in scan.failures if i.reason == "label_conflict"]
    assert conflict.clip_id == "006/006_1_2" and "labels samm/006/006_1_2 negative" in conflict.message
    assert "positive under megc2019_3" in conflict.message


def test_list_keys_match_the_id_formats():
    assert list_key("samm", "6", "006_1_2") == list_key("samm", "006", "006_1_2")
    assert list_key("smic", "s01", "s01_ne_01") == list_key("smic", "s01", "s1_ne_01")
    assert list_key("casme2", "sub01", "EP02_01f") == list_key("CASME2", "sub1", "ep02_01f")
    assert list_key("casme2", "sub01", "EP02_01f") != list_key("casme2", "sub01", "EP02_01")
    assert list_key("samm", "6", "006_1_2") != list_key("samm", "7", "006_1_2")


def test_labels_and_composites_import_light():
    """Label schemes, composites and clip lists load without pandas, the adapters, torch or cv2."""
    code = (
        "import sys, mepipe.labels, mepipe.composites\n"
        "mepipe.composites.load_composite('megc2019'); mepipe.labels.load_scheme('casme2_5')\n"
        "heavy = ('pandas', 'torch', 'cv2', 'mepipe.datasets', 'openpyxl', 'xlrd')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
