"""Label schemes, the MEGC2019 composite rule, and evaluation folds (LOSO / LODO) with leak checks."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mepipe.cli import app
from mepipe.composites import check_composite, composite_counts, load_composite, resolve
from mepipe.folds import Fold, FoldLeakError, check_folds, make_folds, select_rows, write_folds_csv
from mepipe.labels import available_schemes, load_scheme
from mepipe.records import ManifestRow
from mepipe.shards.manifest import write_manifest

SCHEMES = (
    "casme2_5",
    "casme2_3",
    "samm_5",
    "mmew_7",
    "mmew_6",
    "mmew_5",
    "smic_3",
    "megc2019_3",
    "casme3_7",
    "casme3_4",
    "casme3_3",
    "dfew_7",
)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def row(
    dataset: str, subject: str, clip: str, emotion: str, status: str = "ok", extra: str = "{}"
) -> ManifestRow:
    clip_id = f"{subject}/{clip}"
    return ManifestRow(
        key=f"{dataset}/{clip_id}",
        dataset=dataset,
        subject=subject,
        clip_id=clip_id,
        status=status,
        emotion_raw=emotion,
        extra=extra,
    )


# ---------------------------------------------------------------------------------------- label schemes
@pytest.mark.parametrize("name", SCHEMES)
def test_every_scheme_loads_with_unique_classes(name):
    assert name in available_schemes()
    s = load_scheme(name)
    assert s.name == name and len(set(s.classes)) == len(s.classes) == s.num_classes
    assert s.mapping, f"{name} maps no dataset"


def test_megc2019_scheme_follows_the_published_grouping():
    s = load_scheme("megc2019_3")
    neg, pos, sur = (s.classes.index(c) for c in ("negative", "positive", "surprise"))
    for raw in ("Anger", "Contempt", "Disgust", "Fear", "Sadness"):
        assert s.label("samm", raw) == neg
    assert (s.label("samm", "Happiness"), s.label("samm", "Surprise"), s.label("samm", "Other")) == (
        pos,
        sur,
        None,
    )
    assert s.label("casme2", "repression") == s.label("casme2", "disgust") == neg
    # CASME II fear/sadness and others are not in the 442-clip list
    assert s.label("casme2", "fear") is s.label("casme2", "sadness") is s.label("casme2", "others") is None
    assert [s.label("smic", x) for x in ("negative", "positive", "surprise")] == [neg, pos, sur]
    assert s.label("mmew", "happiness") is None  # not a member dataset


def test_other_schemes_spot_checks():
    assert load_scheme("casme2_3").label("casme2", "fear") == 0  # MMNet grouping keeps fear
    assert load_scheme("samm_5").label("samm", "Others") == load_scheme("samm_5").label("samm", "Other")
    assert (
        load_scheme("mmew_6").label("mmew", "others") is None
        and load_scheme("mmew_7").label("mmew", "others") == 6
    )
    assert load_scheme("casme3_3").label("casme3_a", "others") is None
    assert load_scheme("casme3_4").label("casme3_a", "others") == 3
    dfew = load_scheme("dfew_7")
    assert [dfew.label("dfew", str(k)) for k in range(1, 8)] == list(range(7))  # index = official label - 1
    assert dfew.label("dfew", "fear") == 6


# ------------------------------------------------------------------------------------ composite rule
def test_megc2019_rule_records_the_published_counts():
    rule = load_composite("megc2019")
    exp = rule.expected
    assert rule.scheme == "megc2019_3" and {m.dataset for m in rule.members} == {"casme2", "samm", "smic"}
    assert rule.exclude == {}  # the official list decides, not MEB's exclusions
    assert exp["total"] == 442 == sum(d["total"] for d in exp["datasets"].values())
    assert exp["classes"] == {"negative": 250, "positive": 109, "surprise": 83}
    for cls, n in exp["classes"].items():
        assert n == sum(d[cls] for d in exp["datasets"].values())
    assert exp["subjects"] == 68 == sum(d["subjects"] for d in exp["datasets"].values())
    assert (
        exp["datasets"]["casme2"]["negative"],
        exp["datasets"]["samm"]["negative"],
        exp["datasets"]["smic"]["negative"],
    ) == (88, 92, 70)
    # the shipped list has exactly the counts the rule expects
    listed = list(rule.clip_list.values())
    assert len(listed) == 442
    for ds, want in exp["datasets"].items():
        part = [c for c in listed if c.dataset == ds]
        assert len(part) == want["total"] and len({c.subject for c in part}) == want["subjects"]
        for cls in ("negative", "positive", "surprise"):
            assert sum(c.label == cls for c in part) == want[cls], (ds, cls)
    names = {c.name: c.label for c in listed}
    assert names["casme2/sub05/EP12_03f"] == "surprise"  # MEB drops it; the organisers list it
    assert "casme2/sub04/EP12_01f" not in names and "casme2/sub24/EP02_07" not in names
    assert names["samm/6/006_1_2"] == "negative" and names["smic/s01/s01_ne_01"] == "negative"


def test_megc2019_rule_on_manifest_rows():
    rule = load_composite("megc2019")
    rows = [
        row("casme2", "sub01", "EP02_01f", "happiness"),
        row("casme2", "sub04", "EP12_01f", "repression"),  # not in the official list
        row("casme2", "sub05", "EP01_01", "fear"),  # not a megc2019_3 class, not listed
        row("samm", "006", "006_1_2", "Anger"),
        row("samm", "006", "006_1_3", "Other"),
        row("smic", "s01", "s1_ne_01", "negative", extra='{"variant": "HS"}'),
        row("smic", "s01", "s1_ne_02", "negative", extra='{"variant": "VIS"}'),  # not SMIC-HS
        row("casme_sq", "s15", "anger1_1", "negative"),  # not a member
    ]
    res = resolve(rule, rows)
    assert [r.key for r in res.kept] == ["casme2/sub01/EP02_01f", "samm/006/006_1_2", "smic/s01/s1_ne_01"]
    why = {r.key: w for r, w in res.excluded}
    assert "not in the megc2019 clip list" in why["casme2/sub04/EP12_01f"]
    assert "variant=HS" in why["smic/s01/s1_ne_02"]
    assert "not a member" in why["casme_sq/s15/anger1_1"]
    counts = composite_counts(rule, res.kept)
    assert counts["classes"] == {"positive": 1, "negative": 2} and counts["subjects"] == 3
    problems = check_composite(rule, res.kept)
    assert "megc2019: total is 3, expected 442" in problems
    assert any(p.startswith("megc2019: casme2 negative is 0, expected 88") for p in problems)
    assert any(
        "439 clip(s) of" in p and "not among the resolved clips" in p and "casme2/sub01/EP19_05f" in p
        for p in problems
    )


def test_composite_rule_that_matches_reports_nothing(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "two",
                "scheme": "smic_3",
                "members": [{"dataset": "smic"}],
                "expected": {
                    "total": 2,
                    "classes": {"negative": 1, "surprise": 1},
                    "datasets": {"smic": {"subjects": 2}},
                },
            }
        )
    )
    rule = load_composite(str(path))
    kept = resolve(rule, [row("smic", "s01", "a", "negative"), row("smic", "s02", "b", "surprise")]).kept
    assert check_composite(rule, kept) == []


# --------------------------------------------------------------------------------------------- folds
def composite_rows() -> list[ManifestRow]:
    """Two datasets that both have a subject called ``01`` (they must stay different subjects)."""
    rows = []
    for ds, subjects, emotions in (
        ("casme3_c", ("01", "02"), ("", "")),
        ("casme2", ("sub01", "sub02", "sub03"), ("happiness", "fear")),
        ("samm", ("01", "006"), ("Anger", "Other")),
    ):
        for s, (k, e) in itertools.product(subjects, enumerate(emotions)):
            rows.append(row(ds, s, f"c{k}", e))
    rows.append(row("casme2", "sub09", "bad", "happiness", status="failed"))
    return rows


@pytest.mark.parametrize("protocol", ["loso", "lodo"])
def test_folds_never_leak_a_subject(protocol):
    rows = composite_rows()
    folds = make_folds(rows, protocol)
    ok = [r for r in rows if r.status == "ok"]
    subj = {r.key: f"{r.dataset}/{r.subject}" for r in ok}
    for f in folds:
        assert not {subj[k] for k in f.train} & {subj[k] for k in f.test}
        assert set(f.train) | set(f.test) == {r.key for r in ok} and not set(f.train) & set(f.test)
    assert sorted(k for f in folds for k in f.test) == sorted(subj)  # each clip tested exactly once
    if protocol == "loso":
        assert len(folds) == 7  # casme3_c/01 and samm/01 are two folds, not one
        assert {"loso-casme3_c/01", "loso-samm/01"} <= {f.name for f in folds}
    else:
        assert [f.held_out for f in folds] == ["casme2", "casme3_c", "samm"]


def test_folds_filtered_by_scheme_and_dataset_and_per_dataset():
    rows = composite_rows()
    folds = make_folds(rows, "loso", scheme="casme2_5")
    assert [f.held_out for f in folds] == ["casme2/sub01", "casme2/sub02", "casme2/sub03"]
    assert all(len(f.test) == 1 and len(f.train) == 2 for f in folds)  # fear dropped, failed row ignored
    assert len(select_rows(rows, datasets=["samm"])) == 4
    within = make_folds(rows, "loso", per_dataset=True)
    samm = next(f for f in within if f.held_out == "samm/006")
    assert all(k.startswith("samm/") for k in samm.train) and len(samm.train) == 2
    with pytest.raises(ValueError):
        make_folds(rows, "lodo", per_dataset=True)


def test_check_folds_catches_a_leak():
    rows = composite_rows()
    leaky = Fold("bad", "samm/01", train=("samm/01/c0",), test=("samm/01/c1",))
    with pytest.raises(FoldLeakError, match="samm/01"):
        check_folds([leaky], rows)


def test_folds_csv_and_cli(tmp_path):
    rows = composite_rows()
    write_manifest(rows, tmp_path)
    path = write_folds_csv(
        make_folds(rows, "loso", scheme="casme2_5"), rows, tmp_path / "f.csv", scheme="casme2_5"
    )
    lines = list(read_csv(path))
    test = [ln for ln in lines if ln["split"] == "test"]
    assert (
        len(test) == 3
        and {ln["class"] for ln in test} == {"happiness"}
        and {ln["label"] for ln in test} == {"0"}
    )

    runner = CliRunner()
    res = runner.invoke(app, ["folds", str(tmp_path), "--protocol", "lodo"])
    assert res.exit_code == 0, res.output
    out = Path(tmp_path / "folds-lodo.csv")
    assert {ln["fold"] for ln in read_csv(out)} == {"lodo-casme2", "lodo-casme3_c", "lodo-samm"}
    res = runner.invoke(
        app,
        ["folds", str(tmp_path / "manifest.csv"), "--labels", "samm_5", "--out", str(tmp_path / "samm.csv")],
    )
    assert res.exit_code == 0, res.output
    assert {ln["dataset"] for ln in read_csv(tmp_path / "samm.csv")} == {"samm"}
    res = runner.invoke(app, ["folds", str(tmp_path), "--protocol", "kfold"])
    assert res.exit_code != 0
    res = runner.invoke(app, ["folds", str(tmp_path), "--labels", "no_such_scheme"])
    assert res.exit_code == 2 and "unknown label scheme" in res.output
