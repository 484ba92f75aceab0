"""The contact sheet: a paged grid, flagged clips first, whole-build counts, word wrap, a colour bar."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from mepipe.inspect import (
    BAR_W,
    CELL_W,
    FONT,
    GAP,
    LABEL_W,
    TILE,
    colour_bar,
    contact_sheet,
    difference_map,
    header,
    wrap,
)
from mepipe.shards.manifest import read_manifest, write_manifest
from tests.toy import write_toy_build

RED = np.array([200, 0, 0])


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 ok clips (the last two flagged by QA) and 3 failed rows with long messages."""
    out = write_toy_build(tmp_path_factory.mktemp("sheet") / "b", subjects=3, clips_per_subject=4, size=48)
    rows = read_manifest(out)
    rows[-1] = dataclasses.replace(rows[-1], qa="poor_fit,unstable", fit_error=55.0, stability=9.0)
    rows[-2] = dataclasses.replace(rows[-2], qa="low_face_score", face_score=0.1)
    long = "the detector found no face in any of the eleven frames searched around the reference " * 3
    for i in range(3):
        rows.append(
            dataclasses.replace(
                rows[0], clip_id=f"sub09/EP0{i}", subject="sub09", status="failed", reason="no_face",
                message=long, shard="",
            )
        )  # fmt: skip
    write_manifest(rows, out)
    return out


def _cell(img: np.ndarray, top: int, row: int, col: int) -> np.ndarray:
    y, x = top + row * (TILE + GAP), col * (CELL_W + GAP)
    return img[y : y + TILE, x : x + CELL_W]


def _top(img: np.ndarray) -> int:
    """First pixel row of the grid: the header is white then text; cells start after it."""
    h = img.shape[0]
    n_rows = round((h - 10) / (TILE + GAP))
    return h - n_rows * (TILE + GAP)


def test_pages_counts_and_flagged_clips_first(build: Path, tmp_path: Path) -> None:
    s = contact_sheet(build, tmp_path / "sheet.png", max_clips=5, per_page=2, columns=2)
    # 5 ok + 3 failed cells, 4 per page -> 2 pages, named next to --sheet
    assert [p.name for p in s.pages] == ["sheet-001.png", "sheet-002.png"]
    assert not (tmp_path / "sheet.png").exists()
    assert (s.shown, s.ok, s.failed, s.flagged, s.failed_shown) == (5, 12, 3, 2, 3)
    pages = [cv2.imread(str(p))[..., ::-1] for p in s.pages]
    for img in pages:
        assert img.shape[1] == 2 * CELL_W + GAP and img.shape[0] <= 80 + 2 * (TILE + GAP)
    first = pages[0]
    top = _top(first)
    reds = [
        np.all(np.abs(_cell(first, top, 0, c)[:, :LABEL_W].astype(int) - RED) < 60, axis=2).sum()
        for c in (0, 1)
    ]
    plain = np.all(np.abs(_cell(first, top, 1, 0)[:, :LABEL_W].astype(int) - RED) < 60, axis=2).sum()
    assert min(reds) > 20 and plain == 0  # the two flagged clips (red QA text) come first
    last = pages[1]
    top = _top(last)
    assert tuple(_cell(last, top, 1, 1)[5, 5]) == (255, 235, 235)  # a failed cell (pink)
    # a shorter sheet later replaces the pages: no stale page is left to mislead
    s2 = contact_sheet(build, tmp_path / "sheet.png", max_clips=5, per_page=10)
    assert s2.pages == [tmp_path / "sheet.png"] and sorted(p.name for p in tmp_path.iterdir()) == [
        "sheet.png"
    ]


def test_header_counts_the_whole_build() -> None:
    text = header("b", shown=5, ok=12, failed_shown=3, failed=3, flagged=2, page=1, pages=2)
    assert text.startswith("b: showing 5 of 12 ok clips (3 failed; 2 flagged") and "page 1/2" in text
    assert "first 2 listed" in header("b", 5, 12, 2, 3, 0)
    assert "page" not in header("b", 5, 12, 3, 3, 0)


def test_wrap_breaks_at_word_boundaries_only() -> None:
    text = "clip sub01/EP02_01f: face box 40x38 px is below face.min_face=48; lower face.min_face if needed"
    width = 200
    lines = wrap(text, width)
    assert len(lines) > 1
    assert " ".join(lines).split() == text.split()  # every word kept whole, in order
    assert all(cv2.getTextSize(ln, FONT, 0.42, 1)[0][0] <= width for ln in lines)
    # one token wider than a line breaks after its separators, not inside a name
    key = "casme2/sub01/EP02_01f_and_a_much_longer_name"
    parts = wrap(key, 120)
    assert "".join(parts) == key and len(parts) > 1
    assert all(p.endswith(("/", "_")) for p in parts[:-1])


def test_difference_map_and_its_colour_bar() -> None:
    onset = np.zeros((32, 32, 3), np.uint8)
    apex = onset.copy()
    apex[8:24, 8:24] = 100  # 25% of the pixels differ by 100 grey levels
    tile, vmax = difference_map(onset, apex)
    assert tile.shape == (TILE, TILE, 3) and vmax == pytest.approx(100.0)
    quiet, vmax_quiet = difference_map(onset, onset)
    assert (
        vmax_quiet == 8.0 and len(np.unique(quiet.reshape(-1, 3), axis=0)) == 1
    )  # noise floor: no difference fills no scale
    bar = colour_bar(vmax)
    assert bar.shape == (TILE, BAR_W, 3)
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_INFERNO)[:, 0, ::-1]
    assert np.abs(bar[8, 6].astype(int) - lut[255]).max() <= 3  # top of the ramp: vmax
    assert np.abs(bar[TILE - 9, 6].astype(int) - lut[0]).max() <= 3  # bottom: 0
    # the hot square of the map has the colour of the bar's top, the rest the bottom's
    assert np.abs(tile[TILE // 2, TILE // 2].astype(int) - lut[255]).max() <= 3
    assert np.abs(tile[2, 2].astype(int) - lut[0]).max() <= 3
