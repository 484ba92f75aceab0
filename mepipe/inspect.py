"""Contact sheets: onset and apex crops of every built clip with landmarks drawn, plus the failures.

Clips whose face quality is flagged (manifest ``qa`` column: ``low_face_score``, ``poor_fit``,
``unstable``, ``several_faces``, ``trimmed`` ...) come first, each with its flags and quality values in
red, so an audit starts with the clips most likely to be wrong.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mepipe.face.geometry import apply_transform
from mepipe.shards.format import CLIPS_GROUP
from mepipe.shards.manifest import read_manifest
from mepipe.shards.reader import open_shard, read_frame

TILE = 160
LABEL_W = 260


def _text(img: np.ndarray, lines: list[str], x: int, y: int, scale: float = 0.42, color=(20, 20, 20)) -> None:
    for k, line in enumerate(lines):
        cv2.putText(img, line[:48], (x, y + 16 * k), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def _tile(frame: np.ndarray, pts: np.ndarray | None) -> np.ndarray:
    s = frame.shape[0]
    t = cv2.resize(frame, (TILE, TILE), interpolation=cv2.INTER_AREA).copy()
    if pts is not None:
        for x, y in pts * (TILE / s):
            cv2.circle(t, (int(round(x)), int(round(y))), 1, (0, 255, 0), -1, cv2.LINE_AA)
    return t


def _diff_tile(onset: np.ndarray, apex: np.ndarray) -> np.ndarray:
    d = np.abs(apex.astype(np.int16) - onset.astype(np.int16)).max(axis=2).astype(np.float32)
    d = np.clip(d * (255.0 / max(8.0, float(np.percentile(d, 99.5)))), 0, 255).astype(np.uint8)
    return cv2.resize(cv2.applyColorMap(d, cv2.COLORMAP_INFERNO)[..., ::-1], (TILE, TILE))


def contact_sheet(out_dir: str | Path, sheet: str | Path, *, max_clips: int = 200) -> Path:
    """Write a PNG: one row per clip (label, onset with landmarks, apex with landmarks, |apex-onset|),
    then one text row per failed clip with its reason."""
    out_dir = Path(out_dir)
    rows = read_manifest(out_dir)
    ok = sorted((r for r in rows if r.status == "ok"), key=lambda r: r.qa == "")[:max_clips]
    n_flagged = sum(r.qa != "" for r in rows if r.status == "ok")
    bad = [r for r in rows if r.status != "ok"]
    width = LABEL_W + 3 * TILE
    header = np.full((30, width, 3), 255, np.uint8)
    _text(
        header,
        [
            f"{out_dir.name}: {len(ok)} ok ({n_flagged} flagged, first), {len(bad)} failed   (onset | apex | |apex-onset|)"
        ],
        6,
        20,
        0.5,
    )
    parts = [header]
    handles: dict[str, object] = {}
    try:
        for r in ok:
            f = handles.get(r.shard) or handles.setdefault(r.shard, open_shard(out_dir / "shards" / r.shard))
            g = f[CLIPS_GROUP][r.key]
            on, ap = read_frame(g, r.onset_idx), read_frame(g, r.apex_idx)
            m = g["transform"][()]
            m_on = m if m.ndim == 2 else m[r.onset_idx]
            pts = apply_transform(m_on, g["landmarks_ref"][()])
            row = np.full((TILE, width, 3), 255, np.uint8)
            _text(
                row,
                [
                    r.key,
                    f"{r.emotion_raw}  AU {r.aus_raw}",
                    f"T={r.n_frames} on/apex/off idx",
                    f"{r.onset_idx}/{r.apex_idx}/{r.offset_idx} ({r.keyframe_source})",
                    r.face_note,
                ],
                6,
                20,
            )
            if r.qa:
                _text(
                    row,
                    [
                        f"QA: {r.qa}",
                        f"score {r.face_score:.2f} fit {r.fit_error:.1f}% stab {r.stability:.1f}%",
                    ],
                    6,
                    110,
                    0.42,
                    (200, 0, 0),
                )
            row[:, LABEL_W : LABEL_W + TILE] = _tile(on, pts)
            row[:, LABEL_W + TILE : LABEL_W + 2 * TILE] = _tile(ap, pts)
            row[:, LABEL_W + 2 * TILE :] = _diff_tile(on, ap)
            parts.append(row)
    finally:
        for h in handles.values():
            h.close()
    for r in bad:
        row = np.full((40, width, 3), (255, 235, 235), np.uint8)
        _text(row, [f"FAILED {r.key}: {r.reason}", r.message[-60:]], 6, 16, 0.4, (150, 0, 0))
        parts.append(row)
    img = np.concatenate(parts, axis=0)
    sheet = Path(sheet)
    sheet.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(sheet), img[..., ::-1])
    return sheet
