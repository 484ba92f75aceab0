"""Build, verify and inspect on small CASME II-layout sets made from the astronaut photograph."""

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mepipe.build import build_dataset
from mepipe.cli import app
from mepipe.config import load_config, parse_config
from mepipe.errors import ConfigError
from mepipe.face.geometry import apply_transform, crop_template
from mepipe.shards import read_clip, read_manifest, verify_build
from tests.conftest import write_casme2_sheet, write_frames

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "casme2.yaml"


def _cfg(**over):
    data = {
        "name": "t",
        "dataset": {"adapter": "casme2"},
        "face": {"min_face": 60},
        "align": {"crop_size": 96},
        "shards": {"max_clips": 2},
    }
    for k, v in over.items():
        data[k] = {**data.get(k, {}), **v}
    return parse_config(data)


@pytest.fixture
def built(casme2_root: Path, tmp_path: Path):
    # add a clip with no face and one with a truncated JPEG; both must become failed rows
    frames = casme2_root / "CASME2_RAW_selected"
    write_frames(
        frames / "sub04" / "EP01_05",
        range(1, 7),
        frame_fn=lambda dx, dy: np.full((480, 640, 3), 120, np.uint8),
    )
    write_frames(frames / "sub04" / "EP02_02", range(10, 16))
    jpg = frames / "sub04" / "EP02_02" / "img13.jpg"
    jpg.write_bytes(jpg.read_bytes()[:3000])
    sheet = casme2_root / "CASME2-coding-20140508.xlsx"
    rows = pd.read_excel(sheet).values.tolist()
    rows += [
        [4, "EP01_05", None, 1, 3, 6, None, "4", "others"],
        [4, "EP02_02", None, 10, 12, 15, None, "9", "disgust"],
    ]
    write_casme2_sheet(sheet, [[None if (isinstance(v, float) and v != v) else v for v in r] for r in rows])
    out = tmp_path / "out"
    summary = build_dataset(_cfg(), casme2_root, out, workers=1)
    return out, summary


def test_build_writes_shards_manifest_and_records_failures(built):
    out, summary = built
    assert (summary.clips_ok, summary.clips_failed) == (3, 6)
    rows = {r.clip_id: r for r in read_manifest(out)}
    assert {k: r.reason for k, r in rows.items() if r.status == "failed"} == {
        "sub02/EP06_01": "missing_frames",
        "sub02/EP07_04": "apex_outside_clip",
        "sub03/EP01_01": "missing_folder",
        "sub03/EP09_02": "bad_value",
        "sub04/EP01_05": "no_face",
        "sub04/EP02_02": "corrupt_frame",
    }
    assert "img13.jpg" in rows["sub04/EP02_02"].message
    # max_clips=2 -> 3 ok clips roll over into two shards, no temporary file left
    assert summary.shards == ["shard-00000.h5", "shard-00001.h5"]
    assert not list((out / "shards").glob("*.tmp"))
    assert (out / "pipeline.resolved.yaml").is_file() and (out / "build-info.json").is_file()
    good = rows["sub01/EP02_01f"]
    assert (good.n_frames, good.onset_idx, good.apex_idx, good.offset_idx) == (12, 0, 5, 11)
    slash = rows["sub01/EP03_02"]
    # apex '/' is estimated from the motion: frames 104 and 109 are shifted most (1.2 px) from frame 100
    assert slash.keyframe_source == "onset=annotated,apex=estimated,offset=annotated" and slash.apex_idx in (
        4,
        9,
    )


def test_shards_read_back_with_plain_h5py(built):
    out, _ = built
    row = next(r for r in read_manifest(out) if r.clip_id == "sub01/EP02_01f")
    with h5py.File(out / "shards" / row.shard, "r") as f:
        assert f.attrs["schema"] == "mepipe-shard" and f.attrs["schema_version"] == 1
        assert len(f.attrs["config_hash"]) == 64
        assert "shape_predictor_68_face_landmarks.dat" in f.attrs["model_files"]
        g = f["clips"]["casme2/sub01/EP02_01f"]
        assert g["frames"].shape == (12, 96, 96, 3) and g["frames"].dtype == np.uint8
        assert g["frames"].chunks == (1, 96, 96, 3)
        assert list(g["frame_numbers"][()]) == list(range(46, 58))
        assert g.attrs["onset"] == 46 and g.attrs["apex"] == 51 and g.attrs["apex_idx"] == 5
        assert g["source_files"][0].decode() == "img46.jpg" and len(g["source_sha256"][0]) == 64
        # the reference landmarks, mapped through the stored transform, sit on the crop template
        crop_pts = apply_transform(g["transform"][()], g["landmarks_ref"][()])
        assert np.median(np.linalg.norm(crop_pts - crop_template(96, 0.3), axis=1)) < 3.0
        # the face is in the crop: the centre is not the flat grey background
        assert g["frames"][0][30:70, 30:70].std() > 10


def test_verify_passes_then_catches_tampering(built):
    out, _ = built
    rep = verify_build(out)
    assert rep.ok and rep.clips_checked == 3 and rep.failed_rows == 6
    row = next(r for r in read_manifest(out) if r.status == "ok")
    with h5py.File(out / "shards" / row.shard, "r+") as f:
        f["clips"][row.key]["frames"][0, 0, 0, 0] ^= 0xFF
    res = CliRunner().invoke(app, ["verify", str(out)])
    assert res.exit_code == 1
    assert "checksum mismatch" in res.output and row.key in res.output


def test_leftover_tmp_shard_is_a_problem_of_a_finished_build_and_cleaned_by_a_rerun(built, casme2_root):
    out, _ = built
    (out / "shards" / "shard-00009.h5.tmp").write_bytes(b"partial")
    rep = verify_build(out)
    assert not rep.ok and "interrupted" in rep.problems[0]
    before = {r.key: r.frames_sha256 for r in read_manifest(out)}
    again = build_dataset(_cfg(), casme2_root, out)  # a re-run resumes: keeps the 3 ok clips
    assert again.clips_kept == 3 and again.frames == 0
    assert {r.key: r.frames_sha256 for r in read_manifest(out)} == before
    assert verify_build(out).ok


def test_build_info_log_and_summary(built):
    out, _ = built
    info = json.loads((out / "build-info.json").read_text())
    assert info["versions"]["h5py"] == h5py.__version__ and info["versions"]["av"] != "not installed"
    assert info["video_decoder"] == "pyav"
    engine = info["engine"]
    assert (engine["backend"], engine["worker_slots"]) == ("local", 1)
    # in-process: the one slot is busy for the whole task phase, start-up aside
    assert 0 < engine["worker_busy_seconds"] <= engine["tasks_seconds"] <= info["seconds"]
    assert 0.5 < engine["worker_busy_share"] <= 1.0
    assert info["failures_by_reason"]["no_face"] == 1 and info["clips_ok"] == 3
    assert info["qa_flags"] == {} and info["clips_flagged"] == 0
    log = (out / "build.log").read_text()
    assert "build finished: 3 ok" in log and "failures by reason: apex_outside_clip 1" in log
    assert "failed casme2/sub04/EP02_02: corrupt_frame" in log and "img13.jpg" in log
    # the fix tables' outcomes: this little sheet is not the distributed one, so no fix fits it
    from mepipe.datasets import get_adapter

    scan = get_adapter("casme2", Path(info["source"])).scan()
    assert info["fix_report"] == [o.as_dict() for o in scan.fix_report] and len(info["fix_report"]) == 22
    assert info["fixes_applied"] == 0 and info["fixes_unmatched"] == 22
    assert "fix tables: 0 fix(es) applied, 22 did not fit" in log


def test_fix_report_counts_applied_and_unmatched_fixes(tmp_path: Path):
    from mepipe.datasets import get_adapter
    from mepipe.engine.info import fix_report_info
    from tests.test_fixes import casme2_like_meb

    casme2_like_meb(tmp_path)
    outcomes = get_adapter("casme2", tmp_path).scan().fix_report
    info = fix_report_info(outcomes)
    assert (info["fixes_applied"], info["fixes_unmatched"]) == (22, 0)
    assert json.loads(json.dumps(info["fix_report"]))[0]["status"] == "applied"
    mixed = fix_report_info([*outcomes[:2], dataclasses.replace(outcomes[2], status="mismatch")])
    assert (mixed["fixes_applied"], mixed["fixes_unmatched"]) == (2, 1)


def test_qa_flags_are_counted():
    from mepipe.engine.info import qa_counts
    from mepipe.records import ManifestRow

    rows = [
        ManifestRow("a/1", "a", "s", "1", "ok", qa="unstable;low_score"),
        ManifestRow("a/2", "a", "s", "2", "ok", qa="unstable"),
        ManifestRow("a/3", "a", "s", "3", "failed", qa="unstable"),
        ManifestRow("a/4", "a", "s", "4", "ok"),
    ]
    assert qa_counts(rows) == {"low_score": 1, "unstable": 2}


def test_per_frame_mode_and_reference_search(casme2_root: Path, tmp_path: Path):
    # the onset frame has no face (blank): the face stage moves the reference to the next frame; the
    # annotated onset shows no face, so the clip fails (face_lost) unless keyframes are estimated, when
    # the clip is trimmed to the frames with the face
    folder = casme2_root / "CASME2_RAW_selected" / "sub01" / "EP02_01f"
    write_frames(folder, [46], frame_fn=lambda dx, dy: np.full((480, 640, 3), 100, np.uint8))
    out = tmp_path / "pf"
    build_dataset(_cfg(align={"mode": "per_frame", "smoothing": 3}), casme2_root, out)
    row = next(r for r in read_manifest(out) if r.clip_id == "sub01/EP02_01f")
    assert row.status == "failed" and row.reason == "face_lost" and "onset frame 46" in row.message
    out = tmp_path / "pf2"
    build_dataset(
        _cfg(align={"mode": "per_frame", "smoothing": 3}, keyframes={"mode": "estimate"}), casme2_root, out
    )
    row = next(r for r in read_manifest(out) if r.clip_id == "sub01/EP02_01f")
    clip = read_clip(out / "shards" / row.shard, "casme2/sub01/EP02_01f")
    assert clip.attrs["reference_frame"] == 47 and "no face on frame 46" in clip.attrs["face_note"]
    assert row.face_span == "47-57" and "trimmed" in row.qa.split(";")
    assert clip.transform.shape == (11, 2, 3)


def test_several_faces_are_flagged_and_small_faces_fail(casme2_root: Path, tmp_path: Path):
    import cv2

    from tests.conftest import face_canvas

    def two_faces(dx, dy):
        big = face_canvas(dx, dy)
        small = cv2.resize(big, (320, 240))
        big[240:, 320:] = small
        return big

    folder = casme2_root / "CASME2_RAW_selected" / "sub01" / "EP02_01f"
    write_frames(folder, range(46, 58), frame_fn=two_faces)
    out = tmp_path / "multi"
    build_dataset(_cfg(face={"detect_max_side": 640, "min_face": 60}), casme2_root, out)
    row = next(r for r in read_manifest(out) if r.clip_id == "sub01/EP02_01f")
    assert row.status == "ok" and row.faces_found == 2 and "2 plausible" in row.face_note
    assert "several_faces" in row.qa.split(";")
    out2 = tmp_path / "small"
    build_dataset(_cfg(face={"min_face": 400}), casme2_root, out2)
    row = next(r for r in read_manifest(out2) if r.clip_id == "sub01/EP02_01f")
    assert row.status == "failed" and row.reason == "face_too_small" and "min_face" in row.message


def test_config_errors_name_the_key_and_the_fix(tmp_path: Path):
    bad = tmp_path / "p.yaml"
    bad.write_text(PIPELINE.read_text().replace("crop_size: 224", "crop_sise: 224"))
    with pytest.raises(ConfigError, match=r"align.crop_sise: unknown key"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"align.crop_size: .*greater than or equal to 32"):
        load_config(PIPELINE, {"align.crop_size": 8})
    with pytest.raises(ConfigError, match="dataset: required key is missing"):
        parse_config({"name": "x"})
    assert load_config(PIPELINE, {"align.crop_size": 112}).align.crop_size == 112


def test_cli_build_inspect_and_exit_codes(casme2_root: Path, tmp_path: Path):
    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(
        app,
        [
            "build-dataset",
            str(PIPELINE),
            "--source",
            str(casme2_root),
            "--out",
            str(out),
            "--set",
            "align.crop_size=64",
            "--set",
            "face.min_face=60",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "build finished: 3 ok (0 kept from earlier runs), 4 failed" in res.output
    assert "failures by reason" in res.output and "shard(s)" in res.output
    res = runner.invoke(app, ["inspect", str(out), "--sheet", str(tmp_path / "sheet.png")])
    assert res.exit_code == 0, res.output
    import cv2

    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    from mepipe.inspect import CELL_W, GAP, TILE

    # 3 ok + 4 failed cells in a 2-column grid: 4 rows of cells under the header
    assert sheet is not None and sheet.shape[0] > 4 * TILE and sheet.shape[1] == 2 * CELL_W + GAP
    res = runner.invoke(
        app,
        ["build-dataset", str(PIPELINE), "--source", str(tmp_path / "missing"), "--out", str(tmp_path / "o")],
    )
    assert res.exit_code == 2 and "does not exist" in res.output
