"""Helpers shared by the micro-expression adapters: header detection, row reading, frame listing,
clip validation and the failure rows that name the annotation file and row.

Frame-number convention: every adapter here keeps the dataset's **source frame numbers** (the
number in the frame file name, e.g. SAMM ``006_05562.jpg`` is frame 5562), and the annotation's
onset/apex/offset are compared with those numbers directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from mepipe.datasets.base import FrameLister, FrameListError, validate_image_clip
from mepipe.datasets.sheets import MISSING_MARKS, cell_int, cell_str, is_blank, read_table
from mepipe.errors import AnnotationError, ConfigError
from mepipe.records import ClipIssue, ClipRecord

#: The annotated keyframes of a row, in time order.
KEYFRAMES = ("onset", "apex", "offset")


def find_header_row(
    path: Path, required: Sequence[str], *, sheet: str | int = 0, search_rows: int = 40
) -> int:
    """1-based Excel row of the first row (among the first ``search_rows``) holding all ``required`` names.

    Used for sheets whose header is preceded by a prose block whose length differs between file
    versions (SAMM, SAMM long videos).

    Raises:
        AnnotationError: naming the file, the rows searched and the columns expected.
    """
    raw = read_table(path, header_row=None, sheet=sheet)
    wanted = {c.strip().lower() for c in required}
    for i, values in enumerate(raw.head(search_rows).itertuples(index=False), start=1):
        cells = {str(v).strip().lower() for v in values if not is_blank(v)}
        if wanted <= cells:
            return i
    raise AnnotationError(
        f"{path}: none of rows 1..{min(search_rows, len(raw))} holds the column names {list(required)}; "
        "is this the coding file as distributed (not a re-saved or trimmed copy)? "
        "Set dataset.options.annotation to the right file"
    )


def read_rows(
    path: Path,
    required: Sequence[str],
    optional: Sequence[str] = (),
    *,
    header_row: int = 1,
    sheet: str | int = 0,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(excel_row, {column: value})`` for each non-blank data row under the header.

    Column names are matched after stripping spaces; ``optional`` columns are given as ``None``
    when the file lacks them.

    Raises:
        AnnotationError: naming the file, the header row and the missing columns.
    """
    df = read_table(path, header_row=header_row, sheet=sheet)
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise AnnotationError(
            f"{path}: header row {header_row} lacks column(s) {missing}; found {list(df.columns)}. "
            "Is this the right file version, and is the header on that row? "
            "Point dataset.options.annotation at the coding file as distributed"
        )
    present = [c for c in optional if c in df.columns]
    for i, rec in enumerate(df.to_dict("records")):
        if all(is_blank(rec[c]) for c in required):
            continue
        row = {c: rec[c] for c in required}
        row.update({c: (rec[c] if c in present else None) for c in optional})
        yield header_row + 1 + i, row


def frame_value(v: Any, column: str, *, missing_ok: bool) -> int | None:
    """A keyframe cell as an int; the :data:`MISSING_MARKS` give ``None`` when ``missing_ok``."""
    if missing_ok:
        return cell_int(v, column, missing=MISSING_MARKS)
    if is_blank(v):
        raise ValueError(f"{column} is empty")
    return cell_int(v, column)


class KeyframeParser(Protocol):
    """Reads one keyframe cell as a frame number (``None`` = not annotated, only when ``missing_ok``).

    Raises ``ValueError`` naming ``column`` when the cell is not a frame number; :func:`frame_value`
    is the usual one.
    """

    def __call__(self, v: Any, column: str, *, missing_ok: bool) -> int | None: ...


def pick_dir(
    root: Path,
    wanted: object,
    candidates: Sequence[str],
    *,
    what: str,
    accept: Callable[[Path], bool] | None = None,
) -> Path:
    """The first existing folder among ``wanted`` (option) or ``candidates`` (relative to ``root``).

    ``accept`` can reject a folder that exists but does not look right (e.g. holds no subject folders).

    Raises:
        ConfigError: listing the folders tried and the option that selects another.
    """
    names = [str(wanted)] if wanted else list(candidates)
    for name in names:
        p = Path(name) if Path(name).is_absolute() else root / name
        if p.is_dir() and (accept is None or accept(p)):
            return p
    raise ConfigError(
        f"no {what} folder under {root}: tried {names}; point --source at the dataset as distributed "
        "or set dataset.options.frames_dir in the pipeline"
    )


def subfolders_by_lower_name(folder: Path) -> dict[str, Path]:
    """Sub-folders of ``folder`` keyed by lower-case name (for case-insensitive lookups)."""
    if not folder.is_dir():
        return {}
    return {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}


def row_issue(
    dataset: str,
    sheet: Path | None,
    row: int | None,
    reason: str,
    text: str,
    *,
    clip_id: str = "",
    subject: str = "",
) -> ClipIssue:
    """A failure for an annotation row, its message prefixed with ``<file> row <n>:``."""
    where = (
        f"{sheet} row {row}: " if sheet is not None and row is not None else (f"{sheet}: " if sheet else "")
    )
    return ClipIssue(dataset, clip_id or f"row{row}", reason, where + text, subject, str(sheet or ""), row)


def finish_clip(
    clip: ClipRecord,
    frames: FrameLister,
    *,
    sheet: Path | None = None,
    row: int | None = None,
    end_at_apex: bool = False,
) -> tuple[ClipRecord, ClipIssue | None]:
    """Attach the frames on disk to ``clip``, validate it and keep only its annotated interval.

    Steps: the folder ``clip.source_path`` must exist; its frames are listed (numeric order); the
    keyframes are checked against the frames on disk (:func:`validate_image_clip`); the frames are
    cut to ``onset..offset`` (or ``onset..apex`` when ``end_at_apex`` and the offset is unknown, used
    for long videos where the folder holds the whole recording); the interval must have no gap.

    Returns:
        (clip, None) when buildable, else (clip, issue) -- the caller records the failure.
    """
    folder = Path(clip.source_path)
    where = f"{sheet} row {row}: " if sheet is not None and row is not None else ""

    def fail(c: ClipRecord, reason: str, text: str) -> tuple[ClipRecord, ClipIssue]:
        return c, ClipIssue(c.dataset, c.clip_id, reason, where + text, c.subject, str(sheet or folder), row)

    if not frames.allows(folder):
        return fail(clip, "path_outside_source", f"clip {clip.clip_id}: {frames.refusal(folder)}")
    if not folder.is_dir():
        return fail(
            clip,
            "missing_folder",
            f"frame folder {folder} does not exist; check --source, the "
            "subject/filename in the sheet, and dataset.options.frames_dir",
        )
    try:
        files, numbers = frames(folder)
    except FrameListError as exc:  # bad_frame_name, duplicate_frame_number, path_outside_source
        return fail(clip, exc.reason, str(exc))
    full = replace(clip, frame_files=tuple(files), frame_numbers=tuple(numbers))
    issue = validate_image_clip(full, require_contiguous=False)
    if issue is not None:
        return fail(full, issue.reason, issue.message)
    lo = clip.onset if clip.onset is not None else numbers[0]
    end = clip.offset if clip.offset is not None else (clip.apex if end_at_apex else None)
    hi = end if end is not None else numbers[-1]
    keep = [i for i, k in enumerate(numbers) if lo <= k <= hi]
    cut = replace(
        full, frame_files=tuple(files[i] for i in keep), frame_numbers=tuple(numbers[i] for i in keep)
    )
    issue = validate_image_clip(cut, require_contiguous=True)
    if issue is not None:
        return fail(cut, issue.reason, issue.message)
    return cut, None


def disambiguate(names: Iterable[tuple[str, str]]) -> list[str]:
    """Unique names for repeated ``(group, name)`` pairs, in order: the first keeps ``name``, later
    ones get ``name2``, ``name3`` ... (the CAS(ME)^3 convention MEB uses for repeated filenames).

    Example: ``[("s1","a"), ("s1","a"), ("s2","a")]`` -> ``["a", "a2", "a"]``.
    """
    seen: dict[tuple[str, str], int] = {}
    out = []
    for group, name in names:
        n = seen.get((group, name), 0) + 1
        seen[(group, name)] = n
        out.append(name if n == 1 else f"{name}{n}")
    return out


def digits_of(value: object) -> int:
    """The integer in a subject cell: ``6`` / ``"6"`` / ``"006"`` / ``"s15"`` / ``"sub01"`` -> int.

    Raises:
        ValueError: when the cell holds no number.
    """
    text = cell_str(value)
    digits = "".join(ch for ch in text if ch.isdigit())
    if not digits:
        raise ValueError(f"subject {value!r} holds no number")
    return int(digits)
