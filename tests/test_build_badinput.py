"""Bad input at build time: each kind becomes a failed row naming the file and the fix while the rest
of the build goes on; manifest cells a spreadsheet would execute are neutralised; crafted shards and
manifests cannot make mepipe read outside OUT."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import h5py
import numpy as np
import pandas as pd
import pytest

from mepipe.build import build_dataset
from mepipe.config import parse_config
from mepipe.errors import ShardError
from mepipe.records import ClipRecord, ManifestRow
from mepipe.shards import read_manifest, verify_build
from mepipe.shards.manifest import neutralise_cell, restore_cell, write_manifest
from mepipe.sources import FrameReadError, image_size, open_source
from tests.conftest import write_casme2_sheet


def _cfg(**over):
    data = {
        "name": "t",
        "dataset": {"adapter": "casme2"},
        "face": {"min_face": 60},
        "align": {"crop_size": 64},
    }
    for k, v in over.items():
        data[k] = {**data.get(k, {}), **v}
    return parse_config(data)


def _frames(root: Path, clip: str) -> Path:
    return root / "CASME2_RAW_selected" / clip


def _rows(out: Path) -> dict[str, ManifestRow]:
    return {r.clip_id: r for r in read_manifest(out)}


def _jpeg(path: Path, w: int, h: int) -> None:
    cv2.imwrite(str(path), np.full((h, w, 3), 90, np.uint8))


def test_frame_size_changed(casme2_root: Path, tmp_path: Path):
    _jpeg(_frames(casme2_root, "sub01/EP02_01f") / "img50.jpg", 8000, 8000)  # one huge frame
    _jpeg(_frames(casme2_root, "sub02/EP05_03f") / "img8.jpg", 1280, 960)  # the reference (onset) frame
    rows = _rows(_build(casme2_root, tmp_path))
    big, ref = rows["sub01/EP02_01f"], rows["sub02/EP05_03f"]
    assert big.status == ref.status == "failed"
    assert big.reason == ref.reason == "frame_size_changed"
    assert "img50.jpg is 8000x8000 pixels but the clip's frames are 640x480" in big.message
    assert "img8.jpg is 1280x960" in ref.message and "re-extract or resize" in ref.message
    assert rows["sub01/EP03_02"].status == "ok"  # the rest of the build went on


def test_small_frame_and_header_sizes(casme2_root: Path, tmp_path: Path):
    folder = _frames(casme2_root, "sub01/EP02_01f")
    _jpeg(folder / "img52.jpg", 320, 240)
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((7, 9, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "x.bmp"), np.zeros((5, 3, 3), np.uint8))
    assert image_size(folder / "img46.jpg") == (480, 640) and image_size(tmp_path / "x.png") == (7, 9)
    assert image_size(tmp_path / "x.bmp") == (5, 3)
    row = _rows(_build(casme2_root, tmp_path))["sub01/EP02_01f"]
    assert row.reason == "frame_size_changed" and "img52.jpg is 320x240" in row.message


def test_video_whose_frame_size_changes(tmp_path: Path):
    import av

    parts = []
    for k, (w, h) in enumerate(((320, 240), (160, 120))):  # an MPEG-TS stream that switches size
        path = tmp_path / f"p{k}.ts"
        with av.open(str(path), "w", format="mpegts") as c:
            s = c.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            for i in range(8):
                f = av.VideoFrame.from_ndarray(np.full((h, w, 3), 80 + i, np.uint8), format="rgb24")
                f.pts, f.time_base = 8 * k + i, Fraction(1, 25)
                for p in s.encode(f):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        parts.append(path.read_bytes())
    video = tmp_path / "switch.ts"
    video.write_bytes(b"".join(parts))
    src = open_source(ClipRecord("folder", "s", "switch", "video", str(video)))
    assert len(src) == 16
    with pytest.raises(FrameReadError) as err:
        list(src.iter_range(0, 16))
    assert err.value.reason == "frame_size_changed" and "frame 8 is 160x120" in str(err.value)


def test_empty_frame_file_is_corrupt_frame_with_its_path(casme2_root: Path, tmp_path: Path):
    (_frames(casme2_root, "sub01/EP02_01f") / "img49.jpg").write_bytes(b"")
    row = _rows(_build(casme2_root, tmp_path))["sub01/EP02_01f"]
    assert row.reason == "corrupt_frame" and "img49.jpg: empty file (0 bytes)" in row.message


def test_too_few_frames_threshold(casme2_root: Path, tmp_path: Path):
    one = _frames(casme2_root, "sub03/EP02_07")
    one.mkdir(parents=True)
    cv2.imwrite(str(one / "img5.jpg"), cv2.imread(str(_frames(casme2_root, "sub01/EP02_01f") / "img46.jpg")))
    sheet = casme2_root / "CASME2-coding-20140508.xlsx"
    rows = pd.read_excel(sheet).values.tolist() + [[3, "EP02_07", None, 5, 5, 5, None, "4", "others"]]
    write_casme2_sheet(sheet, [[None if (isinstance(v, float) and v != v) else v for v in r] for r in rows])
    got = _rows(_build(casme2_root, tmp_path))["sub03/EP02_07"]
    assert got.reason == "too_few_frames" and "only 1 frame(s)" in got.message
    assert "build.min_frames=2" in got.message
    relaxed = _rows(_build(casme2_root, tmp_path / "relaxed", build={"min_frames": 1}))["sub03/EP02_07"]
    assert relaxed.status == "ok" and relaxed.n_frames == 1


def test_formula_cells_are_neutralised_and_read_back(casme2_root: Path, tmp_path: Path):
    from openpyxl import load_workbook

    sheet = casme2_root / "CASME2-coding-20140508.xlsx"
    wb = load_workbook(sheet)
    for col, text in (("I", '=HYPERLINK("http://evil.example","click")'), ("H", "+4")):
        cell = wb.active[f"{col}2"]  # row 2: sub01/EP02_01f; stored as text, as a real sheet can hold it
        cell.value = text
        cell.data_type = "s"
    wb.save(sheet)
    out = _build(casme2_root, tmp_path)
    text = (out / "manifest.csv").read_text()
    assert "'=HYPERLINK(" in text and ",=HYPERLINK" not in text and ",'+4," in text
    row = _rows(out)["sub01/EP02_01f"]
    assert row.emotion_raw == '=HYPERLINK("http://evil.example","click")' and row.aus_raw == "+4"
    assert row.onset == 46 and ",-1," in text  # numeric columns are never prefixed
    for v in ("=1+1", "-", "@x", "\tx", "'", "''=", "'plain", "plain", "", "a=b"):
        assert restore_cell(neutralise_cell(v)) == v
        assert not neutralise_cell(v) or neutralise_cell(v)[0] not in "=+-@\t\r"


def test_crafted_manifest_shard_name_is_refused(casme2_root: Path, tmp_path: Path):
    out = _build(casme2_root, tmp_path)
    rows = read_manifest(out)
    ok = next(r for r in rows if r.status == "ok")
    ok.shard = "../../outside.h5"
    write_manifest(rows, out)
    with pytest.raises(ShardError, match=r"line \d+: shard '\.\./\.\./outside\.h5' is not a shard file name"):
        read_manifest(out)
    rep = verify_build(out)
    assert not rep.ok and "not a shard file name" in rep.problems[0]


@pytest.mark.parametrize("kind", ["external_link", "external_storage"])
def test_verify_refuses_shards_that_point_outside(casme2_root: Path, tmp_path: Path, kind: str):
    out = _build(casme2_root, tmp_path)
    row = next(r for r in read_manifest(out) if r.status == "ok")
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"\0" * 4096)
    with h5py.File(out / "shards" / row.shard, "r+") as f:
        g = f["clips"][row.key]
        if kind == "external_link":
            g["landmarks_ref_ext"] = h5py.ExternalLink(str(outside), "/data")
        else:
            g.create_dataset("stolen", shape=(4096,), dtype=np.uint8, external=[(str(outside), 0, 4096)])
    before = outside.stat().st_atime_ns
    rep = verify_build(out)
    assert not rep.ok
    assert any(
        row.shard in p and "refusing a shard that refers to data outside itself" in p for p in rep.problems
    )
    assert ("external link" if kind == "external_link" else "external file") in " ".join(rep.problems)
    assert outside.stat().st_atime_ns == before  # the outside file was not read


def _build(root: Path, tmp_path: Path, **over) -> Path:
    out = tmp_path / "out"
    build_dataset(_cfg(**over), root, out)
    return out
