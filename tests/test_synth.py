"""Tests of mepipe.synth: native layouts, coding sheets, determinism, visible AUs, dlib checks."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook

from mepipe.errors import MepipeError
from mepipe.registry import UnknownNameError
from mepipe.synth import LAYOUTS, read_ground_truth, synthesize
from mepipe.synth import landmarks as lm
from mepipe.synth.expressions import AU_TABLE, AUSpec, au_fields, intensity_profile
from mepipe.synth.faces import detect_faces, find_face
from mepipe.synth.fields import AnchorField, field_at, move_points

CASME2_COLUMNS = [
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
SAMM_COLUMNS = [
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


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else img


def _pose(clip: dict, t: int) -> np.ndarray:
    hp = clip["head_pose"]
    m = cv2.getRotationMatrix2D(tuple(hp["centre"]), hp["rot_deg"][t], hp["scale"][t])
    m[:, 2] += (hp["tx"][t], hp["ty"][t])
    return np.vstack([m, [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def casme2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("casme2")
    calls: list[tuple[int, int]] = []
    summary = synthesize(
        "casme2", out, subjects=2, clips_per_subject=3, seed=0, progress=lambda d, n: calls.append((d, n))
    )
    assert summary.n_clips == 6 and calls[-1] == (6, 6)
    assert summary.ground_truth == out / "synth_ground_truth.json"
    return out, read_ground_truth(out)


# ------------------------------------------------------------------------------------------ casme2


def test_casme2_layout_files(casme2: tuple[Path, dict]) -> None:
    out, gt = casme2
    assert (out / "CASME2-coding-20140508.xlsx").is_file()
    assert sorted(p.name for p in (out / "CASME2_RAW_selected").iterdir()) == ["sub01", "sub02"]
    for clip in gt["clips"]:
        folder = out / clip["path"]
        assert folder.parent.name == f"sub{clip['subject']:02d}" and folder.name == clip["native"]["filename"]
        names = {p.name for p in folder.iterdir()}
        assert names == {f"img{n}.jpg" for n in range(clip["onset"], clip["offset"] + 1)}
        assert 30 <= clip["onset"] <= 200 and clip["onset"] < clip["apex"] < clip["offset"]
        assert 40 <= clip["n_frames"] <= 70
    img = _read_rgb(out / gt["clips"][0]["path"] / f"img{gt['clips'][0]['onset']}.jpg")
    assert img.shape == (480, 640, 3)


def test_casme2_coding_sheet(casme2: tuple[Path, dict]) -> None:
    out, gt = casme2
    df = pd.read_excel(out / "CASME2-coding-20140508.xlsx")
    assert list(df.columns) == CASME2_COLUMNS
    assert len(df) == len(gt["clips"])
    assert set(df["Subject"]) == {1, 2} and all(isinstance(v, int) for v in df["Subject"].tolist())
    assert df["Filename"].str.fullmatch(r"EP\d\d_\d\df?").all()
    slash = df[df["ApexFrame"].astype(str) == "/"]
    assert len(slash) >= 1
    by_name = {(c["subject"], c["native"]["filename"]): c for c in gt["clips"]}
    for _, row in df.iterrows():
        clip = by_name[(row["Subject"], row["Filename"])]
        assert row["OnsetFrame"] == clip["onset"] and row["OffsetFrame"] == clip["offset"]
        assert str(row["Action Units"]) == clip["aus_written"]
        assert row["Estimated Emotion"] == clip["label"] == row["Estimated Emotion"].lower()
        if str(row["ApexFrame"]) == "/":
            assert clip["written"] == {"apex": "/"}  # ground truth keeps the true apex
            assert (out / clip["path"] / f"img{clip['apex']}.jpg").is_file()
        else:
            assert row["ApexFrame"] == clip["apex"]


def test_casme2_expression_visible_only_in_au_regions(casme2: tuple[Path, dict]) -> None:
    out, gt = casme2
    for clip in gt["clips"]:
        folder = out / clip["path"]
        onset = _read_rgb(folder / f"img{clip['onset']}.jpg").astype(np.float32)
        apex = _read_rgb(folder / f"img{clip['apex']}.jpg").astype(np.float32)
        t_on, t_ap = clip["onset"] - clip["first_frame"], clip["apex"] - clip["first_frame"]
        # undo the head motion and the gain change between the two frames with the ground truth
        warp = _pose(clip, t_on) @ np.linalg.inv(_pose(clip, t_ap))
        apex = cv2.warpAffine(
            apex, warp[:2], (640, 480), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101
        )
        apex *= clip["gain"][t_on] / clip["gain"][t_ap]
        diff = np.abs(apex - onset).mean(-1)
        au_mask = np.zeros(diff.shape, np.uint8)
        for a in clip["au_anchors_onset"]:
            cv2.circle(au_mask, (round(a["x"]), round(a["y"])), round(1.5 * a["sigma_px"]), 1, -1)
        face = np.zeros(diff.shape, np.uint8)
        x0, y0, x1, y1 = lm.bounding_box(np.array(clip["landmarks_onset"]))
        face[int(y0) - 20 : int(y1) + 20, int(x0) - 20 : int(x1) + 20] = 1
        inside, outside = diff[au_mask > 0].mean(), diff[(face > 0) & (au_mask == 0)].mean()
        assert inside > 2.5, (clip["clip_id"], clip["aus_written"], inside)
        assert inside > 1.8 * outside, (clip["clip_id"], clip["aus_written"], inside, outside)


def test_casme2_dlib_finds_one_face_and_landmarks_match(casme2: tuple[Path, dict]) -> None:
    out, gt = casme2
    errors = []
    for clip in gt["clips"]:
        img = _read_rgb(out / clip["path"] / f"img{clip['onset']}.jpg")
        assert len(detect_faces(img, 0)) == 1, clip["clip_id"]
        found = find_face(img, (0,))
        assert found is not None
        errors.append(np.median(np.linalg.norm(found[1] - np.array(clip["landmarks_onset"]), axis=1)))
        assert clip["landmarks_first"] == clip["landmarks_onset"]
    assert max(errors) < 3.0, errors
    assert float(np.median(errors)) < 2.5, errors


def test_ground_truth_schema(casme2: tuple[Path, dict]) -> None:
    _, gt = casme2
    assert gt["layout"] == "casme2" and gt["seed"] == 0 and gt["params"]["amplitude"] == "micro"
    assert gt["params"]["frame_size"] == [640, 480] and gt["params"]["jpeg_quality"] == 90
    assert [s["subject"] for s in gt["subjects"]] == [1, 2]
    for clip in gt["clips"]:
        n = clip["n_frames"]
        assert len(clip["intensity"]) == n and len(clip["gain"]) == n and len(clip["head_pose"]["tx"]) == n
        assert clip["intensity"][0] == 0.0 and clip["intensity"][clip["apex"] - clip["first_frame"]] == 1.0
        assert len(clip["landmarks_onset"]) == 68 and len(clip["landmarks_apex"]) == 68
        assert 0.5 < clip["peak_displacement_px"] < 12.0  # micro: a few pixels
        assert clip["aus"] and all(a.lstrip("RL").isdigit() for a in clip["aus"])


# ------------------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        synthesize("casme2", tmp_path / name, subjects=1, clips_per_subject=1, seed=seed)
        runs[name] = _digest(tmp_path / name)
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]
    frames_a = {v for k, v in runs["a"].items() if k.endswith(".jpg")}
    frames_c = {v for k, v in runs["c"].items() if k.endswith(".jpg")}
    assert not frames_a & frames_c


def test_rerun_into_same_folder_replaces_and_foreign_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    synthesize("casme2", out, subjects=1, clips_per_subject=1, seed=0)
    first = set(_digest(out))
    synthesize("casme2", out, subjects=1, clips_per_subject=1, seed=1)
    second = set(_digest(out))
    assert first != second
    gt = read_ground_truth(out)
    assert {c["path"] for c in gt["clips"]} == {str(Path(k).parent) for k in second if k.endswith(".jpg")}
    with pytest.raises(MepipeError, match="holds a synthetic 'casme2'"):
        synthesize("samm", out, subjects=1, clips_per_subject=1)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("user data")
    with pytest.raises(MepipeError, match="not empty"):
        synthesize("casme2", foreign, subjects=1, clips_per_subject=1)
    assert (foreign / "keep.txt").read_text() == "user data"


# ------------------------------------------------------------------------------ other layouts


def test_samm_layout_and_header_on_row_13(tmp_path: Path) -> None:
    out = tmp_path / "samm"
    synthesize("samm", out, subjects=1, clips_per_subject=2, seed=0)
    gt = read_ground_truth(out)
    ws = load_workbook(out / "SAMM_Micro_FACS_Codes_v2.xlsx").active
    assert [ws.cell(13, c).value for c in range(1, 13)] == SAMM_COLUMNS
    assert all(ws.cell(r, 1).value for r in range(1, 13))  # prose above the header
    df = pd.read_excel(out / "SAMM_Micro_FACS_Codes_v2.xlsx", header=12)
    assert list(df.columns) == SAMM_COLUMNS and len(df) == 2
    assert df["Subject"].tolist() == [6, 6]
    assert set(df["Estimated Emotion"]) <= {
        "Anger",
        "Contempt",
        "Happiness",
        "Surprise",
        "Other",
        "Disgust",
        "Fear",
        "Sadness",
    }
    for clip, (_, row) in zip(gt["clips"], df.iterrows(), strict=True):
        folder = out / "SAMM" / "006" / row["Filename"]
        assert folder == out / clip["path"]
        names = sorted(p.name for p in folder.iterdir())
        assert names == [f"006_{n:05d}.jpg" for n in range(row["Onset Frame"], row["Offset Frame"] + 1)]
        assert row["Duration"] == row["Offset Frame"] - row["Onset Frame"] + 1
        img = cv2.imread(str(folder / names[0]), cv2.IMREAD_UNCHANGED)
        assert img.ndim == 2  # grayscale JPEG
        assert len(detect_faces(img, 0)) == 1


def test_smic_layout(tmp_path: Path) -> None:
    out = tmp_path / "smic"
    synthesize("smic", out, subjects=1, clips_per_subject=3, seed=0)
    gt = read_ground_truth(out)
    assert gt["annotation_files"] == []
    assert {c["label"] for c in gt["clips"]} == {"negative", "positive", "surprise"}
    abbrev = {"negative": "ne", "positive": "po", "surprise": "sur"}
    for clip in gt["clips"]:
        folder = out / clip["path"]
        assert folder.relative_to(out).parts[:4] == ("HS", "s1", "micro", clip["label"])
        assert folder.name.startswith(f"s1_{abbrev[clip['label']]}_")
        names = sorted(p.name for p in folder.iterdir())
        assert names == [f"image{n:06d}.bmp" for n in range(clip["onset"], clip["offset"] + 1)]
        assert clip["onset"] < clip["apex"] < clip["offset"]


def test_dfew_videos_and_splits(tmp_path: Path) -> None:
    out = tmp_path / "dfew"
    synthesize("dfew", out, subjects=2, clips_per_subject=1, seed=0)
    gt = read_ground_truth(out)
    assert gt["params"]["amplitude"] == "macro"
    split = out / "EmoLabel_DataSplit"
    for fold in range(1, 6):
        rows = {}
        for part in ("train", "test"):
            with (split / f"{part}(single-labeled)" / f"set_{fold}.csv").open() as fh:
                reader = csv.DictReader(fh)
                assert reader.fieldnames == ["video_name", "label"]
                rows[part] = [(int(r["video_name"]), int(r["label"])) for r in reader]
        assert len(rows["train"]) + len(rows["test"]) == 2
        subj = {c["native"]["video_name"]: c["subject_index"] for c in gt["clips"]}
        assert not {subj[v] for v, _ in rows["train"]} & {subj[v] for v, _ in rows["test"]}
    for clip in gt["clips"]:
        path = out / clip["path"]
        assert (
            path.parent == out / "Clip" / "original"
            and path.name == f"{clip['native']['video_name']:05d}.mp4"
        )
        assert 1 <= int(clip["label"]) <= 7
        cap = cv2.VideoCapture(str(path))
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
        cap.release()
        assert len(frames) == clip["n_frames"] and 25 <= len(frames) <= 75
        assert 0 < clip["onset"] < clip["apex"] < clip["offset"] < len(frames)
        assert len(detect_faces(cv2.cvtColor(frames[clip["apex"]], cv2.COLOR_BGR2RGB), 0)) == 1


def test_user_portraits(tmp_path: Path) -> None:
    from mepipe.synth.photo import astronaut

    faces = tmp_path / "faces"
    faces.mkdir()
    photo = astronaut()[20:300, 100:360]
    cv2.imwrite(str(faces / "me.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    (faces / "notes.txt").write_text("ignored")
    synthesize("casme2", tmp_path / "out", subjects=1, clips_per_subject=1, faces_dir=faces)
    gt = read_ground_truth(tmp_path / "out")
    assert gt["subjects"][0]["base_face"] == "me.png"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MepipeError, match="no portraits"):
        synthesize("casme2", tmp_path / "out2", subjects=1, clips_per_subject=1, faces_dir=empty)


def test_clip_frames_sets_the_length_of_every_clip(tmp_path: Path) -> None:
    """``clip_frames`` (the long-clip throughput set) gives each clip a length in the range, frames on disk
    and annotation agreeing; a bad range is refused."""
    for layout in ("casme2", "dfew"):
        synthesize(layout, tmp_path / layout, subjects=1, clips_per_subject=3, seed=1, clip_frames=(90, 95))
        gt = read_ground_truth(tmp_path / layout)
        lengths = [c["n_frames"] for c in gt["clips"]]
        assert len(lengths) == 3 and all(90 <= n <= 95 for n in lengths), (layout, lengths)
    on_disk = [
        len(list(d.glob("*.jpg"))) for d in sorted((tmp_path / "casme2").glob("CASME2_RAW_selected/*/*"))
    ]
    assert sorted(on_disk) == sorted(c["n_frames"] for c in read_ground_truth(tmp_path / "casme2")["clips"])
    with pytest.raises(MepipeError, match="clip_frames"):
        synthesize("casme2", tmp_path / "bad", clip_frames=(30, 20))


def test_varied_expressions_draw_several_au_sets_per_class_and_fainter_clips(tmp_path: Path) -> None:
    """``expressions="varied"`` renders each clip with one of its class's varied AU combinations (several
    seen per class, shared AUs between classes) at 0.5-1.3x the amplitude; other layouts refuse it and
    write nothing; the default is the canonical table."""
    from mepipe.synth.layouts.casme2 import CLASSES, VARIED_CLASSES

    synthesize("casme2", tmp_path / "v", subjects=3, clips_per_subject=8, seed=4, expressions="varied")
    gt = read_ground_truth(tmp_path / "v")
    assert gt["params"]["expressions"] == "varied"
    per_class: dict[str, set[tuple[int, ...]]] = {}
    for c in gt["clips"]:
        combo = tuple(int(code.lstrip("RL")) for code in c["aus"])
        assert combo in VARIED_CLASSES[c["label"]], c
        per_class.setdefault(c["label"], set()).add(combo)
    assert max(len(v) for v in per_class.values()) >= 3, per_class
    iod = {s["index"]: s["iod_px"] for s in gt["subjects"]}
    gains = [c["amplitude_px_per_unit"] / (0.03 * iod[c["subject_index"]]) for c in gt["clips"]]
    assert 0.5 <= min(gains) < 0.8 and max(gains) <= 1.3, gains  # some clips fainter than canonical ever is
    synthesize("casme2", tmp_path / "c", subjects=3, clips_per_subject=8, seed=4)
    canonical = read_ground_truth(tmp_path / "c")
    assert "expressions" not in canonical["params"]
    assert all(
        tuple(int(a.lstrip("RL")) for a in c["aus"]) in CLASSES[c["label"]] for c in canonical["clips"]
    )
    with pytest.raises(MepipeError, match="samm layout has no varied expression table"):
        synthesize("samm", tmp_path / "s", expressions="varied")
    assert not (tmp_path / "s").exists()


# --------------------------------------------------------------------------------- unit pieces


def test_registry_and_argument_errors(tmp_path: Path) -> None:
    assert LAYOUTS.names() == ["casme2", "dfew", "samm", "smic"]
    with pytest.raises(UnknownNameError, match="valid names: casme2, dfew, samm, smic"):
        synthesize("casme9", tmp_path / "x")
    with pytest.raises(MepipeError, match="amplitude"):
        synthesize("casme2", tmp_path / "x", amplitude="huge")
    with pytest.raises(MepipeError, match=">= 1"):
        synthesize("casme2", tmp_path / "x", subjects=0)


def test_intensity_profile() -> None:
    frames = np.arange(46, 101)
    a = intensity_profile(frames, 46, 70, 100)
    assert a[0] == 0.0 and a[70 - 46] == 1.0 and a[-1] == pytest.approx(0.0, abs=1e-12)
    assert a[58 - 46] == pytest.approx(0.5) and a[85 - 46] == pytest.approx(0.5)
    assert np.all(np.diff(a[: 70 - 46 + 1]) > 0) and np.all(np.diff(a[70 - 46 :]) < 0)


def test_move_points_inverts_the_backward_warp() -> None:
    f = AnchorField.build([[50.0, 60.0], [58.0, 60.0]], [[3.0, -2.0], [1.0, 4.0]], [6.0, 6.0])
    src = np.array([[50.0, 60.0], [55.0, 57.0], [100.0, 100.0]])
    p = move_points([f], src, scale=0.7)
    np.testing.assert_allclose(p - 0.7 * field_at([f], p), src, atol=1e-6)
    np.testing.assert_allclose(p[2], src[2], atol=1e-6)  # far away: no motion


def test_mirror_map_and_unilateral_aus() -> None:
    assert all(lm.MIRROR[lm.MIRROR[i]] == i for i in range(68))
    pts = np.random.default_rng(0).uniform(0, 100, size=(68, 2))
    np.testing.assert_allclose(lm.mirror_landmarks(lm.mirror_landmarks(pts, 120), 120), pts)
    xs = np.linspace(0, 1, 17)
    base = np.zeros((68, 2))
    base[:17] = np.c_[xs * 100, 50 + 30 * np.sin(np.pi * xs)]
    base[lm.EYE_R, :] = [30.0, 40.0]
    base[lm.EYE_L, :] = [70.0, 40.0]
    base[48], base[54] = [35.0, 75.0], [65.0, 75.0]
    right = au_fields([AUSpec(12, "R")], base, 3.0)[0]
    both = au_fields([AUSpec(12)], base, 3.0)[0]
    assert len(right.centers) == 1 and len(both.centers) == 2
    assert right.centers[0][0] == 35.0 and right.vectors[0][0] < 0 and right.vectors[0][1] < 0  # out and up
    assert set(AU_TABLE) >= {1, 2, 4, 5, 7, 9, 10, 12, 14, 15, 17, 20, 24}


@pytest.mark.parametrize(
    ("layout", "kwargs"),
    [("dfew", {"conditions": ("cut", "distractor_photo")}), ("casme2", {"expressions": "varied"})],
)
def test_worker_processes_write_the_same_bytes_as_one_process(
    tmp_path: Path, layout: str, kwargs: dict
) -> None:
    seen: list[tuple[int, int]] = []
    runs = {}
    for workers in (1, 2):
        s = synthesize(layout, tmp_path / str(workers), subjects=2, clips_per_subject=2, seed=5, workers=workers,
                       progress=lambda done, total: seen.append((done, total)), **kwargs)  # fmt: skip
        runs[workers] = _digest(s.out)
    assert runs[1] == runs[2]  # frames (JPEG or mp4), sheets and ground truth, byte for byte
    assert len([k for k in runs[1] if not k.endswith(".json")]) > 4
    assert seen == [(i, 4) for i in range(1, 5)] * 2  # every clip reported once, in either mode
    with pytest.raises(MepipeError, match="workers"):
        synthesize(layout, tmp_path / "0", workers=0)


class _SilentWriter:
    """A ``cv2.VideoWriter`` stand-in that opens (or not) and then writes nothing, like OpenCV on a full disk."""

    opened = True

    def __init__(self, path: str, *args) -> None:
        self.path = path

    def isOpened(self) -> bool:  # noqa: N802 -- OpenCV's name
        return self.opened

    def write(self, frame) -> None:
        pass

    def release(self) -> None:
        pass


@pytest.mark.parametrize("opened", [False, True])
def test_a_video_that_cannot_be_written_is_an_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened: bool
) -> None:
    from mepipe.synth.layouts import base

    monkeypatch.setattr(base.cv2, "VideoWriter", type("W", (_SilentWriter,), {"opened": opened}))
    with pytest.raises(OSError, match=r"00001\.mp4.* MB free there") as err:
        synthesize("dfew", tmp_path / "d", subjects=1, clips_per_subject=1, seed=0)
    assert ("cannot open" in str(err.value)) != opened  # at open, or when the file is closed empty


def test_a_run_that_stopped_midway_is_replaced_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mepipe.synth import api

    out = tmp_path / "ds"
    synthesize("dfew", tmp_path / "whole", subjects=1, clips_per_subject=3, seed=2)
    real, calls = api._render_clip, []

    def fail_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "_render_clip", fail_on_second)
    with pytest.raises(OSError, match="disk full"):
        synthesize("dfew", out, subjects=1, clips_per_subject=3, seed=2)
    assert (out / api.UNFINISHED_FILE).is_file() and not (out / "synth_ground_truth.json").exists()
    monkeypatch.setattr(api, "_render_clip", real)
    synthesize("dfew", out, subjects=1, clips_per_subject=3, seed=2)  # the same command again
    assert _digest(out) == _digest(tmp_path / "whole")  # no leftover of the stopped run, no marker
    with pytest.raises(MepipeError, match="holds a synthetic 'dfew'"):  # another layout still refused
        synthesize("casme2", out, subjects=1, clips_per_subject=1)
