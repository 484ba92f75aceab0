"""PNG figures: action heat maps, pre-training reconstructions and confusion matrices.

OpenCV is imported lazily here and nowhere else in ``mepipe.train``; without it the pictures are
skipped (the functions return ``None``) and training still runs. All inputs are RGB; files are
written with ``cv2.imwrite``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mepipe.train.augment import denormalize

TILE = 112


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


def heatmap_grid(samples: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """One row per sample: onset, apex, ``|apex - onset|`` (amplified) and the heat map over the onset.

    Args:
        samples: dicts with ``onset``/``apex`` ``(H, W, 3) uint8`` RGB, ``heat`` ``(h, w)`` float in
            ``[0, 1]`` and ``title`` (e.g. ``"sub01/EP02 t=happ p=happ"``).
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
        overlay = cv2.addWeighted(on, 0.55, colour, 0.45, 0)
        tiles = [
            _label(cv2, _tile(cv2, on), s.get("title", "onset")),
            _label(cv2, _tile(cv2, ap), "apex"),
            _label(cv2, _tile(cv2, diff), "|apex-onset|"),
            _label(cv2, _tile(cv2, overlay), "action heat"),
        ]
        rows.append(np.concatenate(tiles, axis=1))
    return _write(cv2, path, np.concatenate(rows, axis=0))


def reconstruction_grid(
    i_t: np.ndarray, i_td: np.ndarray, recon: np.ndarray, path: Path, titles: Sequence[str] | None = None
) -> Path | None:
    """One row per pair: ``I_t``, ``I_{t+δ}``, the low-resolution reconstruction, and ``I_{t+δ}`` at the
    reconstruction's resolution (what the pixel term aims at). All ``(B, H, W, 3) uint8`` RGB."""
    cv2 = _cv2()
    if cv2 is None or len(i_t) == 0:
        return None
    rows = []
    for j in range(len(i_t)):
        s = recon.shape[1]
        goal = cv2.resize(i_td[j], (s, s), interpolation=cv2.INTER_AREA)
        head = titles[j] if titles else "I_t"
        tiles = [
            _label(cv2, _tile(cv2, i_t[j]), head),
            _label(cv2, _tile(cv2, i_td[j]), "I_t+d"),
            _label(cv2, _tile(cv2, recon[j]), "reconstruction"),
            _label(cv2, _tile(cv2, goal), "target (low-res)"),
        ]
        rows.append(np.concatenate(tiles, axis=1))
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
