"""Contact sheets: onset and apex crops of every built clip with landmarks drawn, plus the failures.

The sheet is a paged grid: each cell is one clip (its text, onset with landmarks, apex with
landmarks, and |apex - onset| with a colour bar giving the grey levels its colours stand for); a page
holds at most ``per_page`` rows of ``columns`` cells, so a large build gives several PNGs of a
readable size instead of one very tall image. Clips whose face quality is flagged (manifest ``qa``
column: ``low_face_score``, ``poor_fit``, ``unstable``, ``several_faces``, ``trimmed`` ...) come first,
each with its flags and quality values in red, so an audit starts with the clips most likely to be
wrong; failed clips follow (reason and message). Every page's header counts the whole build ("showing
K of M ok clips (F failed)"), and text is wrapped at word boundaries, never cut inside a word.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mepipe.face.geometry import apply_transform
from mepipe.records import ManifestRow
from mepipe.shards.format import CLIPS_GROUP
from mepipe.shards.manifest import read_manifest
from mepipe.shards.reader import open_shard, read_frame

TILE = 160
LABEL_W = 260
BAR_W = 46
"""Width of the colour bar (ramp and its values) next to each |apex-onset| tile."""
CELL_W = LABEL_W + 3 * TILE + BAR_W
GAP = 6
FONT = cv2.FONT_HERSHEY_SIMPLEX
LINE_H = 15
INK, RED, DARK_RED = (20, 20, 20), (200, 0, 0), (150, 0, 0)


@dataclass(frozen=True)
class ContactSheet:
    """What :func:`contact_sheet` wrote: the page PNGs (``SHEET`` alone when one page suffices,
    else ``SHEET-001.png`` ...) and the counts of the whole build."""

    pages: list[Path]
    shown: int
    ok: int
    failed: int
    flagged: int
    failed_shown: int


def wrap(text: str, width_px: int, scale: float = 0.42) -> list[str]:
    """Break ``text`` into lines of at most ``width_px`` pixels (OpenCV Hershey simplex at ``scale``),
    at spaces; a single word wider than a line is broken after ``/`` ``_`` ``-`` ``.`` when it has
    them, and only otherwise between characters."""

    def fits(s: str) -> bool:
        return cv2.getTextSize(s, FONT, scale, 1)[0][0] <= width_px

    def split_word(word: str) -> list[str]:
        parts, cur = [], ""
        pieces = [p for p in _separated(word) if p]
        for p in pieces if all(fits(p) for p in pieces) else list(word):
            if cur and not fits(cur + p):
                parts.append(cur)
                cur = ""
            cur += p
        return [*parts, cur] if cur else parts

    lines: list[str] = []
    for paragraph in str(text).splitlines() or [""]:
        cur = ""
        for word in paragraph.split():
            for piece in [word] if fits(word) else split_word(word):
                cand = f"{cur} {piece}" if cur else piece
                if fits(cand):
                    cur = cand
                else:
                    lines.append(cur)
                    cur = piece
        lines.append(cur)
    return [ln for ln in lines if ln] or [""]


def _separated(word: str) -> list[str]:
    """``"casme2/sub01/EP02_01f"`` -> ``["casme2/", "sub01/", "EP02_", "01f"]`` (separators kept)."""
    out, cur = [], ""
    for ch in word:
        cur += ch
        if ch in "/_-.":
            out.append(cur)
            cur = ""
    return [*out, cur]


def _text(img: np.ndarray, lines: list[str], x: int, y: int, *, width: int, max_lines: int,
          scale: float = 0.42, color=INK) -> int:  # fmt: skip
    """Draw ``lines`` wrapped to ``width`` pixels from baseline ``y``; at most ``max_lines`` (the
    last shown ends with ``...`` when more were left out). Returns the next baseline."""
    wrapped = [w for line in lines if line for w in wrap(line, width, scale)]
    if len(wrapped) > max_lines:
        wrapped = wrapped[: max(max_lines - 1, 0)] + ["..."]
    for k, line in enumerate(wrapped):
        cv2.putText(img, line, (x, y + LINE_H * k), FONT, scale, color, 1, cv2.LINE_AA)
    return y + LINE_H * len(wrapped)


def _tile(frame: np.ndarray, pts: np.ndarray | None) -> np.ndarray:
    s = frame.shape[0]
    t = cv2.resize(frame, (TILE, TILE), interpolation=cv2.INTER_AREA).copy()
    if pts is not None:
        for x, y in pts * (TILE / s):
            cv2.circle(t, (int(round(x)), int(round(y))), 1, (0, 255, 0), -1, cv2.LINE_AA)
    return t


def difference_map(onset: np.ndarray, apex: np.ndarray) -> tuple[np.ndarray, float]:
    """|apex - onset| (max over channels) as an inferno-coloured ``(TILE, TILE, 3)`` uint8 RGB tile,
    and the grey-level difference (0..255) drawn at the top of the colour scale (the 99.5th
    percentile, at least 8, so noise alone does not fill the scale)."""
    d = np.abs(apex.astype(np.int16) - onset.astype(np.int16)).max(axis=2).astype(np.float32)
    vmax = max(8.0, float(np.percentile(d, 99.5)))
    d = np.clip(d * (255.0 / vmax), 0, 255).astype(np.uint8)
    return cv2.resize(cv2.applyColorMap(d, cv2.COLORMAP_INFERNO)[..., ::-1], (TILE, TILE)), vmax


def colour_bar(vmax: float) -> np.ndarray:
    """A ``(TILE, BAR_W, 3)`` RGB strip: the inferno ramp (bottom 0, top ``vmax``) with its values."""
    bar = np.full((TILE, BAR_W, 3), 255, np.uint8)
    ramp = np.linspace(255, 0, TILE - 16).astype(np.uint8)[:, None]
    colours = cv2.applyColorMap(np.repeat(ramp, 10, axis=1), cv2.COLORMAP_INFERNO)[..., ::-1]
    bar[8 : TILE - 8, 3:13] = colours
    for value, y in ((vmax, 14), (vmax / 2, TILE // 2 + 4), (0.0, TILE - 8)):
        cv2.putText(bar, f"{value:.0f}", (15, y), FONT, 0.36, INK, 1, cv2.LINE_AA)
    return bar


def _clip_cell(f, r: ManifestRow) -> np.ndarray:
    g = f[CLIPS_GROUP][r.key]
    on, ap = read_frame(g, r.onset_idx), read_frame(g, r.apex_idx)
    m = g["transform"][()]
    pts = apply_transform(m if m.ndim == 2 else m[r.onset_idx], g["landmarks_ref"][()])
    cell = np.full((TILE, CELL_W, 3), 255, np.uint8)
    info = [
        r.key,
        f"{r.emotion_raw}  AU {r.aus_raw}",
        f"T={r.n_frames}; onset/apex/offset idx {r.onset_idx}/{r.apex_idx}/{r.offset_idx} ({r.keyframe_source})",
        r.face_note,
    ]
    qa_lines = 0
    if r.qa:
        qa = [
            f"QA: {r.qa.replace(',', ', ')}",
            f"score {r.face_score:.2f} fit {r.fit_error:.1f}% stab {r.stability:.1f}%",
        ]
        qa_lines = min(len([w for q in qa for w in wrap(q, LABEL_W - 10)]), 4)
        _text(cell, qa, 6, 16 + LINE_H * (10 - qa_lines), width=LABEL_W - 10, max_lines=qa_lines, color=RED)
    _text(cell, info, 6, 16, width=LABEL_W - 10, max_lines=10 - qa_lines)
    x = LABEL_W
    cell[:, x : x + TILE] = _tile(on, pts)
    cell[:, x + TILE : x + 2 * TILE] = _tile(ap, pts)
    diff, vmax = difference_map(on, ap)
    cell[:, x + 2 * TILE : x + 3 * TILE] = diff
    cell[:, x + 3 * TILE :] = colour_bar(vmax)
    return cell


def _failed_cell(r: ManifestRow) -> np.ndarray:
    cell = np.full((TILE, CELL_W, 3), (255, 235, 235), np.uint8)
    y = _text(cell, [f"FAILED {r.key}", f"reason: {r.reason}"], 8, 18, width=CELL_W - 16, max_lines=3,
              scale=0.45, color=DARK_RED)  # fmt: skip
    _text(cell, [r.message], 8, y + 4, width=CELL_W - 16, max_lines=(TILE - y) // LINE_H, color=DARK_RED)
    return cell


def header(build: str, shown: int, ok: int, failed_shown: int, failed: int, flagged: int, page: int = 1,
           pages: int = 1) -> str:  # fmt: skip
    """The first line of every page: counts of the whole build, not of the page or of ``max_clips``."""
    listed = f", first {failed_shown} listed" if failed_shown < failed else ""
    text = (
        f"{build}: showing {shown} of {ok} ok clips ({failed} failed{listed}; {flagged} flagged, shown first)"
    )
    return text + (f"   page {page}/{pages}" if pages > 1 else "")


def page_paths(sheet: Path, n_pages: int) -> list[Path]:
    """``SHEET`` for one page, else ``SHEET-001.png``, ``SHEET-002.png`` ... next to it."""
    if n_pages <= 1:
        return [sheet]
    return [sheet.with_name(f"{sheet.stem}-{i:03d}{sheet.suffix or '.png'}") for i in range(1, n_pages + 1)]


def contact_sheet(
    out_dir: str | Path, sheet: str | Path, *, max_clips: int = 200, per_page: int = 25, columns: int = 2
) -> ContactSheet:
    """Write the contact sheet of a build as one or more PNG pages (see the module docstring).

    Args:
        out_dir: the build folder.
        sheet: the PNG to write; with several pages ``SHEET-001.png`` ... are written next to it
            instead (and pages of an earlier, longer sheet of that name are removed).
        max_clips: at most this many ok clips (flagged ones first) and this many failed clips.
        per_page: at most this many grid rows on a page.
        columns: clips side by side in a row.

    Returns:
        The pages written and the counts of the whole build (shown, ok, failed, flagged).
    """
    if max_clips < 1 or per_page < 1 or columns < 1:
        from mepipe.errors import ConfigError

        raise ConfigError(
            f"max_clips, per_page and columns must be >= 1 (got {max_clips}, {per_page}, {columns})"
        )
    out_dir, sheet = Path(out_dir), Path(sheet)
    rows = read_manifest(out_dir)
    ok_all = [r for r in rows if r.status == "ok"]
    ok = sorted(ok_all, key=lambda r: r.qa == "")[:max_clips]
    bad_all = [r for r in rows if r.status == "failed"]
    bad = bad_all[:max_clips]
    n_flagged = sum(r.qa != "" for r in ok_all)
    cells: list[np.ndarray] = []
    handles: dict[str, object] = {}
    try:
        for r in ok:
            f = handles.get(r.shard) or handles.setdefault(r.shard, open_shard(out_dir / "shards" / r.shard))
            cells.append(_clip_cell(f, r))
    finally:
        for h in handles.values():
            h.close()
    cells += [_failed_cell(r) for r in bad]
    per = per_page * columns
    chunks = [cells[i : i + per] for i in range(0, len(cells), per)] or [[]]
    paths = page_paths(sheet, len(chunks))
    sheet.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_pages(sheet, keep=paths)
    width = columns * CELL_W + (columns - 1) * GAP
    legend = "each cell: text | onset + landmarks | apex + landmarks | |apex-onset| (grey levels, colour bar)"
    for k, (chunk, path) in enumerate(zip(chunks, paths, strict=True)):
        title = header(
            out_dir.name, len(ok), len(ok_all), len(bad), len(bad_all), n_flagged, k + 1, len(chunks)
        )
        lines = [(t, 0.5) for t in wrap(title, width - 12, 0.5)] + [
            (t, 0.4) for t in wrap(legend, width - 12, 0.4)
        ]
        top = 10 + LINE_H * len(lines)
        n_rows = max(1, -(-len(chunk) // columns))
        img = np.full((top + n_rows * (TILE + GAP), width, 3), 255, np.uint8)
        for j, (text, scale) in enumerate(lines):
            cv2.putText(img, text, (6, 16 + LINE_H * j), FONT, scale, INK, 1, cv2.LINE_AA)
        for i, cell in enumerate(chunk):
            y, x = top + (i // columns) * (TILE + GAP), (i % columns) * (CELL_W + GAP)
            img[y : y + TILE, x : x + CELL_W] = cell
        cv2.imwrite(str(path), img[..., ::-1])
    return ContactSheet(paths, len(ok), len(ok_all), len(bad_all), n_flagged, len(bad))


def _remove_stale_pages(sheet: Path, keep: list[Path]) -> None:
    """Pages ``SHEET-NNN.png`` of an earlier run that this run does not rewrite (they would mislead)."""
    import re

    pattern = re.compile(rf"{re.escape(sheet.stem)}-\d{{3}}{re.escape(sheet.suffix or '.png')}")
    if sheet not in keep and sheet.is_file():
        sheet.unlink()
    if sheet.parent.is_dir():
        for p in sheet.parent.iterdir():
            if pattern.fullmatch(p.name) and p not in keep and p.is_file():
                p.unlink()
