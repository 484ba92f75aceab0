"""PNG figures: action heat maps, pre-training reconstructions, confusion matrices, training curves.

OpenCV is imported lazily here and nowhere else in ``mepipe.train``; without it the pictures are
skipped (the functions return ``None``) and training still runs. All inputs are RGB; files are
written with ``cv2.imwrite``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mepipe.train.augment import denormalize

TILE = 112
BAND = 32  # title band above each row of tiles (two text lines)
PANEL_W, PANEL_H = 360, 230


def _cv2() -> Any | None:
    try:
        import cv2
    except ImportError:
        warnings.warn("OpenCV (cv2) is not installed; training pictures are skipped", stacklevel=3)
        return None
    return cv2


def to_uint8_images(x: torch.Tensor) -> np.ndarray:
    """Normalised ``(B, 3, H, W)`` float -> ``(B, H, W, 3) uint8`` RGB."""
    img = denormalize(x.detach().float().cpu()).clamp(0, 1).mul(255).round().to(torch.uint8)
    return img.permute(0, 2, 3, 1).contiguous().numpy()


def _tile(cv2: Any, img: np.ndarray, size: int = TILE) -> np.ndarray:
    interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_NEAREST
    return cv2.resize(img, (size, size), interpolation=interp)


def _label(cv2: Any, tile: np.ndarray, text: str) -> np.ndarray:
    out = tile.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 14), (0, 0, 0), -1)
    cv2.putText(out, text[:22], (2, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _write(cv2: Any, path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _title_band(cv2: Any, width: int, lines: Sequence[str]) -> np.ndarray:
    """A black ``(BAND, width, 3)`` strip with up to two lines of white text, shrunk to fit the width."""
    band = np.zeros((BAND, width, 3), np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i, text in enumerate(list(lines)[:2]):
        scale = 0.42
        while scale > 0.25 and cv2.getTextSize(text, font, scale, 1)[0][0] > width - 6:
            scale -= 0.02
        cv2.putText(band, text, (3, 13 + 15 * i), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return band


def _row(cv2: Any, tiles: list[np.ndarray], title: Sequence[str]) -> np.ndarray:
    row = np.concatenate(tiles, axis=1)
    return np.concatenate([_title_band(cv2, row.shape[1], title), row], axis=0)


def heatmap_grid(samples: Sequence[dict[str, Any]], path: Path, over: str = "onset") -> Path | None:
    """One row per sample under a title band: onset, apex, ``|apex - onset|`` (amplified) and the heat
    map over the ``over`` frame (``onset`` or ``apex``). Rows are ``BAND + TILE`` pixels high, ``4 * TILE`` wide.

    Args:
        samples: dicts with ``onset``/``apex`` ``(H, W, 3) uint8`` RGB, ``heat`` ``(h, w)`` float in
            ``[0, 1]``, ``title`` (the clip id, e.g. ``casme2/sub01/EP02_01f``) and optionally
            ``subtitle`` (e.g. ``true happiness, predicted repression``: full class names).
        path: PNG to write.
    """
    cv2 = _cv2()
    if cv2 is None or not samples:
        return None
    rows = []
    for s in samples:
        on, ap = s["onset"], s["apex"]
        diff = np.abs(ap.astype(np.int16) - on.astype(np.int16))
        diff = np.clip(diff * (255.0 / max(int(diff.max()), 1)), 0, 255).astype(np.uint8)
        heat = cv2.resize(
            np.asarray(s["heat"], dtype=np.float32), (on.shape[1], on.shape[0]), interpolation=cv2.INTER_CUBIC
        )
        colour = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
        overlay = cv2.addWeighted(s[over], 0.55, colour, 0.45, 0)
        tiles = [
            _label(cv2, _tile(cv2, on), "onset"),
            _label(cv2, _tile(cv2, ap), "apex"),
            _label(cv2, _tile(cv2, diff), "|apex-onset|"),
            _label(cv2, _tile(cv2, overlay), "action heat"),
        ]
        rows.append(_row(cv2, tiles, [s.get("title", ""), s.get("subtitle", "")]))
    return _write(cv2, path, np.concatenate(rows, axis=0))


def reconstruction_grid(
    i_t: np.ndarray, i_td: np.ndarray, recon: np.ndarray, path: Path, titles: Sequence[str] | None = None
) -> Path | None:
    """One row per pair under a title band (e.g. the clip id and the frame indices): ``I_t``,
    ``I_{t+δ}``, the low-resolution reconstruction, and ``I_{t+δ}`` at the reconstruction's resolution
    (what the pixel term aims at). All ``(B, H, W, 3) uint8`` RGB; rows are ``BAND + TILE`` high."""
    cv2 = _cv2()
    if cv2 is None or len(i_t) == 0:
        return None
    rows = []
    for j in range(len(i_t)):
        s = recon.shape[1]
        goal = cv2.resize(i_td[j], (s, s), interpolation=cv2.INTER_AREA)
        tiles = [
            _label(cv2, _tile(cv2, i_t[j]), "I_t"),
            _label(cv2, _tile(cv2, i_td[j]), "I_t+d"),
            _label(cv2, _tile(cv2, recon[j]), "reconstruction"),
            _label(cv2, _tile(cv2, goal), "target (low-res)"),
        ]
        rows.append(_row(cv2, tiles, [titles[j]] if titles else []))
    return _write(cv2, path, np.concatenate(rows, axis=0))


PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
"""RGB line colours (the first series of a panel is blue, then orange, green ...)."""


def _panel(cv2: Any, title: str, series: dict[str, tuple[Sequence[float], Sequence[float]]]) -> np.ndarray:
    """One line plot, ``(PANEL_H, PANEL_W, 3)`` RGB: each series ``name -> (x, y)``; more than
    ``len(PALETTE)`` series are drawn thin grey with their mean in black (e.g. one line per fold)."""
    img = np.full((PANEL_H, PANEL_W, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    left, right, top, bottom = 62, 10, 24, 30
    x0, x1, y0, y1 = left, PANEL_W - right, top, PANEL_H - bottom
    cv2.putText(img, title[:48], (left, 16), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    pts = [(float(a), float(b)) for xs, ys in series.values() for a, b in zip(xs, ys, strict=True) if b == b]
    cv2.rectangle(img, (x0, y0), (x1, y1), (120, 120, 120), 1)
    if not pts:
        return img
    xmin, xmax = min(p[0] for p in pts), max(p[0] for p in pts)
    ymin, ymax = min(p[1] for p in pts), max(p[1] for p in pts)
    if xmax == xmin:
        xmax = xmin + 1
    if ymax == ymin:
        ymin, ymax = ymin - 0.5 * (abs(ymin) or 1), ymax + 0.5 * (abs(ymax) or 1)

    def to_px(x: float, y: float) -> tuple[int, int]:
        return (
            int(round(x0 + (x - xmin) / (xmax - xmin) * (x1 - x0))),
            int(round(y1 - (y - ymin) / (ymax - ymin) * (y1 - y0))),
        )

    for v, yy in ((ymax, y0), (ymin, y1)):
        cv2.putText(img, f"{v:.3g}", (4, yy + 4), font, 0.35, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(img, f"epoch {xmin:g}", (x0, y1 + 14), font, 0.35, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(img, f"{xmax:g}", (x1 - 24, y1 + 14), font, 0.35, (60, 60, 60), 1, cv2.LINE_AA)
    many = len(series) > len(PALETTE)
    common = os.path.commonprefix(list(series)) if len(series) > 1 else ""
    cut = max(common.rfind("/"), common.rfind("-")) + 1  # legend: "sub01", not "loso-casme2/sub01"
    for k, (name, (xs, ys)) in enumerate(series.items()):
        line = [to_px(float(a), float(b)) for a, b in zip(xs, ys, strict=True) if b == b]
        colour = (175, 175, 175) if many else PALETTE[k]
        if len(line) > 1:
            cv2.polylines(img, [np.asarray(line, np.int32)], False, colour, 1 if many else 2, cv2.LINE_AA)
        elif line:
            cv2.circle(img, line[0], 3, colour, -1)
        if not many:
            cv2.putText(
                img, name[cut:][:16], (x1 - 110, y0 + 14 + 13 * k), font, 0.35, colour, 1, cv2.LINE_AA
            )
    if many:
        by_x: dict[float, list[float]] = {}
        for xs, ys in series.values():
            for a, b in zip(xs, ys, strict=True):
                if b == b:
                    by_x.setdefault(float(a), []).append(float(b))
        mean = [to_px(x, float(np.mean(v))) for x, v in sorted(by_x.items())]
        if len(mean) > 1:
            cv2.polylines(img, [np.asarray(mean, np.int32)], False, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.putText(
            img,
            f"{len(series)} folds (grey), mean (black)",
            (x0 + 4, y0 + 14),
            font,
            0.35,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return img


def curves_png(
    panels: Sequence[tuple[str, dict[str, tuple[Sequence[float], Sequence[float]]]]], path: Path
) -> Path | None:
    """Training curves: one line-plot panel per ``(title, {series: (epochs, values)})``, side by side
    (wrapping after three panels). Values that are ``nan`` are skipped."""
    cv2 = _cv2()
    if cv2 is None or not panels:
        return None
    imgs = [_panel(cv2, title, series) for title, series in panels]
    while len(imgs) % min(3, len(panels)):
        imgs.append(np.full_like(imgs[0], 255))
    per_row = min(3, len(panels))
    rows = [np.concatenate(imgs[i : i + per_row], axis=1) for i in range(0, len(imgs), per_row)]
    return _write(cv2, path, np.concatenate(rows, axis=0))


def confusion_png(cm: np.ndarray, classes: Sequence[str], path: Path, title: str = "") -> Path | None:
    """Draw a row-normalised confusion matrix with counts (rows: true class, columns: predicted)."""
    cv2 = _cv2()
    if cv2 is None:
        return None
    cm = np.asarray(cm, dtype=np.int64)
    k = cm.shape[0]
    cell, left, top = 64, 110, 40 + 100
    img = np.full((top + k * cell + 20, left + k * cell + 20, 3), 255, np.uint8)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, np.maximum(rows, 1))
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, title[:60], (8, 22), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for i in range(k):
        for j in range(k):
            v = int(round(255 * (1 - frac[i, j])))
            x0, y0 = left + j * cell, top + i * cell
            cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), (v, v, 255), -1)
            colour = (255, 255, 255) if frac[i, j] > 0.6 else (0, 0, 0)
            cv2.putText(img, str(cm[i, j]), (x0 + 8, y0 + 26), font, 0.5, colour, 1, cv2.LINE_AA)
            cv2.putText(img, f"{frac[i, j]:.2f}", (x0 + 8, y0 + 48), font, 0.4, colour, 1, cv2.LINE_AA)
    for i, name in enumerate(classes):
        cv2.putText(img, name[:12], (4, top + i * cell + 36), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        # column names, written vertically: draw on a strip, rotate it by 90 degrees
        strip = np.full((cell, 96, 3), 255, np.uint8)
        cv2.putText(strip, name[:12], (2, 38), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        img[top - 96 : top, left + i * cell : left + (i + 1) * cell] = np.rot90(strip)
    cv2.putText(img, "true \\ predicted", (4, top - 8), font, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
    return _write(cv2, path, img)
