"""Shared fixtures: CASME II-layout mini datasets made from the real astronaut photograph."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from openpyxl import Workbook

from mepipe.synth.photo import astronaut

CASME2_HEADER = [
    "Subject",
    "Filename",
    None,
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    None,
    "Action Units",
    "Estimated Emotion",
]


def face_canvas(dx: float = 0.0, dy: float = 0.0, size=(640, 480)) -> np.ndarray:
    """The astronaut's face enlarged (~160 px) on a 640x480 grey canvas, shifted by (dx, dy) px.
    Returns ``(480, 640, 3) uint8 RGB``."""
    img = astronaut()[30:310, 90:370]
    img = cv2.resize(img, (440, 440), interpolation=cv2.INTER_CUBIC)
    w, h = size
    canvas = np.full((h, w, 3), 90, np.uint8)
    x0, y0 = 100, 20
    canvas[y0 : y0 + 440, x0 : x0 + 440] = img
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(canvas, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


def write_frames(folder: Path, numbers, frame_fn=face_canvas) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k in numbers:
        rgb = frame_fn(0.3 * (k % 5), 0.0)
        cv2.imwrite(str(folder / f"img{k}.jpg"), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])


def write_casme2_sheet(path: Path, rows: list[list]) -> None:
    wb = Workbook()
    ws = wb.active
    ws.append(CASME2_HEADER)
    for r in rows:
        ws.append(r)
    wb.save(path)


@pytest.fixture
def casme2_root(tmp_path: Path) -> Path:
    """A CASME II layout with one good clip per subject and one row per known problem.

    Rows (Excel row numbers 2..): sub01/EP02_01f good; sub01/EP03_02 apex '/';
    sub02/EP05_03f good with AU 'R12'; sub02/EP06_01 a frame missing; sub02/EP07_04 apex outside the
    clip; sub03/EP01_01 folder missing; sub03/EP09_02 OnsetFrame 'x'.
    """
    root = tmp_path / "casme2"
    frames = root / "CASME2_RAW_selected"
    write_frames(frames / "sub01" / "EP02_01f", range(46, 58))
    write_frames(frames / "sub01" / "EP03_02", range(100, 110))
    write_frames(frames / "sub02" / "EP05_03f", range(8, 20))
    write_frames(frames / "sub02" / "EP06_01", [k for k in range(30, 40) if k != 33])
    write_frames(frames / "sub02" / "EP07_04", range(60, 70))
    write_frames(frames / "sub03" / "EP09_02", range(1, 5))
    write_casme2_sheet(
        root / "CASME2-coding-20140508.xlsx",
        [
            [1, "EP02_01f", None, 46, 51, 57, None, "4+7", "disgust"],
            [1, "EP03_02", None, 100, "/", 109, None, "12", "happiness"],
            [2, "EP05_03f", None, 8, 13, 19, None, "R12", "happiness"],
            [2, "EP06_01", None, 30, 35, 39, None, "1+2", "surprise"],
            [2, "EP07_04", None, 60, 75, 69, None, "14", "repression"],
            [3, "EP01_01", None, 5, 8, 12, None, "4", "others"],
            [3, "EP09_02", None, "x", 3, 4, None, "4", "others"],
        ],
    )
    return root
