"""The row scan shared by the coding-sheet adapters (CASME II, SAMM, MMEW, 4DME, CAS(ME)^2,
CAS(ME)^3, SAMM long videos).

An adapter is a :class:`SheetAdapter` that *declares* its sheet -- coding-file names, frame folders,
the columns of subject, clip name, keyframes, emotion and AUs, extra columns, the cell parsers and the
frame-folder template -- and overrides a hook only for a real quirk of its dataset. One scan turns
every row into a clip record or a typed failure, in sheet order:

1. the subject cell is parsed (``bad_subject``) and the clip name read; where a dataset repeats
   names on purpose (CAS(ME)^3) the repeats are numbered ``a``, ``a2``, ``a3``;
2. the row-anchored fixes of the fix table are checked against the rows they point at
   (:func:`~mepipe.datasets.anchors.plan_anchored`);
3. per row: :meth:`SheetAdapter.kind` gives the expression type (or skips or rejects the row); the
   keyed and anchored fixes are applied (``fixes`` column); the keyframe cells are parsed
   (``bad_value``); :meth:`SheetAdapter.source` locates the frame folder; the clip is checked
   against the frames on disk (:func:`~mepipe.datasets.common.finish_clip`) and added to the
   :class:`~mepipe.datasets.base.ScanResult`, which refuses repeated clips (``duplicate_clip``) and
   folders outside the dataset root (``path_outside_source``).

The outcome of every row-anchored fix lands in ``ScanResult.fix_report``; the ones that did not fit
the coding file are also logged as warnings.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from mepipe.datasets.anchors import AnchorPlan, plan_anchored, row_outcome, unused_keyed, warn_unmatched
from mepipe.datasets.base import DatasetAdapter, FrameLister, ScanResult
from mepipe.datasets.common import (
    KEYFRAMES,
    disambiguate,
    find_header_row,
    finish_clip,
    frame_value,
    pick_dir,
    read_rows,
    row_issue,
)
from mepipe.datasets.fixes import Fix, FixTable, load_fixes
from mepipe.datasets.sheets import cell_str, find_annotation
from mepipe.errors import ConfigError
from mepipe.records import ClipIssue, ClipRecord


class RowProblem(ValueError):
    """Raised by a hook to fail a row with its own ``reason`` and the whole message (with the fix)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Columns:
    """The sheet's column names of the fields every coding sheet has (``None``: the sheet lacks it)."""

    subject: str
    name: str
    onset: str
    apex: str | None
    offset: str
    emotion: str | None
    aus: str | None

    def present(self) -> tuple[str, ...]:
        return tuple(
            c
            for c in (self.subject, self.name, self.onset, self.apex, self.offset, self.emotion, self.aus)
            if c
        )


@dataclass
class SheetRow:
    """One annotation row as the scan sees it.

    Attributes:
        number: the Excel row (1-based); index: its position under the header (0-based, MEB's index).
        cells: raw cells by column name.
        subject: canonical subject id ('' when the cell did not parse; ``problem`` says why).
        name: the clip name (the name cell, numbered when repeats are legal).
    """

    number: int
    index: int
    cells: dict[str, Any]
    subject: str = ""
    name: str = ""
    problem: ClipIssue | None = None

    @property
    def clip_id(self) -> str:
        return f"{self.subject}/{self.name}"

    def cell(self, column: str | None) -> str:
        """A cell as clean text ('' for a blank cell or a column the sheet lacks)."""
        return cell_str(self.cells.get(column)) if column else ""


class SheetAdapter(DatasetAdapter):
    """A dataset annotated by a coding sheet, one row per clip (see the module docstring).

    Class attributes (the declaration):
        coding_files: names of the coding file, first found wins (``dataset.options.annotation``).
        frame_dirs, frames_what: candidate frame folders under the root, and their name in messages.
        columns: :class:`Columns`; required_columns: more columns that must exist;
            optional_columns: columns read when present; extra_columns: column -> ``extra`` key.
        header_row: Excel row of the header; ``None``: detected (the first row holding the subject
            and name columns, for sheets with a prose preamble); 0: the sheet has no header.
        fps: frame rate recorded for every clip.
        optional_keyframes: keyframes that may be missing; end_at_apex: an unknown offset cuts the
            clip at the apex (long recordings).
        repeated_names: the same (subject, name) repeats on purpose and is numbered.
        path_template: the frame folder under the frame root, from ``subject``, ``name`` (the
            clip name) and ``folder`` (the name cell as written).
    """

    coding_files: ClassVar[tuple[str, ...]] = ()
    frame_dirs: ClassVar[tuple[str, ...]] = ()
    frames_what: ClassVar[str] = "frame"
    columns: ClassVar[Columns]
    required_columns: ClassVar[tuple[str, ...]] = ()
    optional_columns: ClassVar[tuple[str, ...]] = ()
    extra_columns: ClassVar[dict[str, str]] = {}
    header_row: ClassVar[int | None] = 1
    fps: float = 30.0
    optional_keyframes: ClassVar[tuple[str, ...]] = ("apex",)
    end_at_apex: ClassVar[bool] = False
    repeated_names: ClassVar[bool] = False
    path_template: ClassVar[str] = "{subject}/{name}"
    option_names = ("annotation", "frames_dir", "fixes")

    # ------------------------------------------------------------------------------------- hooks
    def subject_id(self, value: Any) -> str:
        """The canonical subject id of a subject cell; raises ``ValueError`` when it holds none."""
        raise NotImplementedError

    def keyframe(self, v: Any, column: str, *, missing_ok: bool) -> int | None:
        """A keyframe cell as a frame number (default :func:`~mepipe.datasets.common.frame_value`)."""
        return frame_value(v, column, missing_ok=missing_ok)

    def prepare(self) -> None:
        """Per-scan setup after the coding file is found (option checks, side sheets)."""

    def accept_frames_root(self, folder: Path) -> bool:
        """Whether an existing candidate frame folder looks right."""
        return True

    def rows(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(Excel row, {column: cell})`` for every data row of :attr:`sheet`."""
        columns = (*self.columns.present(), *self.required_columns)
        return read_rows(self.sheet, columns, self.optional_columns, header_row=self.header)

    def kind(self, row: SheetRow) -> str | None:
        """``micro`` / ``macro`` for the row, or ``None`` to skip it (``dataset.options.types``)."""
        return self.expression_type

    def annotation(self, row: SheetRow) -> dict[str, Any]:
        """The row's raw ``onset, apex, offset, emotion, aus`` before fixes."""
        c = self.columns
        return {
            "onset": row.cells.get(c.onset),
            "apex": row.cells.get(c.apex) if c.apex else None,
            "offset": row.cells.get(c.offset),
            "emotion": row.cells.get(c.emotion) if c.emotion else "",
            "aus": row.cells.get(c.aus) if c.aus else "",
        }

    def source(self, row: SheetRow, values: Mapping[str, Any]) -> Path:
        """The clip's frame folder (default :attr:`path_template` under the frame root)."""
        # joined part by part, so a name cell holding a path (``../x``, ``/abs``) is seen as one and
        # refused by the containment check (path_outside_source) instead of landing somewhere odd
        fields = {"subject": row.subject, "name": row.name, "folder": row.cell(self.columns.name)}
        return self.frames_root.joinpath(*(part.format(**fields) for part in self.path_template.split("/")))

    def extra(self, row: SheetRow) -> dict[str, str]:
        """``extra`` of the clip: the Excel row and the :attr:`extra_columns` that are filled."""
        out = {"row": str(row.number)}
        out.update({key: row.cell(col) for col, key in self.extra_columns.items() if row.cell(col)})
        return out

    def check(self, row: SheetRow, clip: ClipRecord) -> ClipIssue | None:
        """A dataset-specific verdict on a formed clip before its frames are listed."""
        return None

    # --------------------------------------------------------------------------------- the scan
    def scan(self) -> ScanResult:
        self.sheet = find_annotation(self.root, self.options.get("annotation"), self.coding_files, self.name)
        self.types = self._types()
        self.header = (
            self.header_row
            if self.header_row is not None
            else find_header_row(self.sheet, (self.columns.subject, self.columns.name))
        )
        self.prepare()
        self.frames_root = pick_dir(
            self.root,
            self.options.get("frames_dir"),
            self.frame_dirs,
            what=self.frames_what,
            accept=self.accept_frames_root,
        )
        out = self.new_result(self.frames_root)
        frames = FrameLister(out.roots)
        rows = self._identify()
        table = load_fixes(self.name, self.options.get("fixes"))
        plan = plan_anchored(
            self.name,
            table,
            self.sheet,
            self.header,
            {r.number: self._fields(r) for r in rows},
            self._keyframes,
        )
        self._report: dict[str, Any] = {o.fix_id: o for o in plan.outcomes}
        intervals: dict[tuple[str, ...], int] = {}
        for row in rows:
            self._row(out, frames, table, plan, row, intervals)
        out.fix_report.extend(self._report[f.id] for f in table.anchored if f.id in self._report)
        seen = [(r.subject, r.name) for r in rows if r.problem is None]
        out.fix_report.extend(unused_keyed(self.name, table, seen, self.sheet))
        warn_unmatched(self.name, table, out.fix_report)
        return out

    def _types(self) -> str:
        types = str(self.options.get("types", "all"))
        if types not in ("all", "micro", "macro"):
            raise ConfigError(
                f"{self.name}: types {types!r} must be all, micro or macro; fix dataset.options.types"
            )
        return types

    def _identify(self) -> list[SheetRow]:
        """Read every row, parse its subject and name the clips."""
        rows = []
        for number, cells in self.rows():
            row = SheetRow(number, number - self.header - 1, cells)
            try:
                row.subject = self.subject_id(cells[self.columns.subject])
            except ValueError as exc:
                row.problem = self._issue(row, exc, "bad_subject", f"fix the {self.columns.subject} cell")
            row.name = row.cell(self.columns.name)
            rows.append(row)
        if self.repeated_names:
            good = [r for r in rows if r.problem is None]
            for r, name in zip(good, disambiguate((r.subject, r.name) for r in good), strict=True):
                r.name = name
        return rows

    def _fields(self, row: SheetRow) -> dict[str, Any]:
        """What an anchored fix may expect of a row: its fields as written."""
        return {"subject": row.subject, "filename": row.cell(self.columns.name), **self.annotation(row)}

    def _issue(self, row: SheetRow, exc: Exception | str, reason: str, hint: str = "") -> ClipIssue:
        if isinstance(exc, RowProblem):
            reason, text = exc.reason, str(exc)
        else:
            text = f"{exc}; {hint}" if hint else str(exc)
        clip_id = row.clip_id if row.subject else ""
        return row_issue(
            self.name, self.sheet, row.number, reason, text, clip_id=clip_id, subject=row.subject
        )

    def _keyframes(self, values: Mapping[str, Any]) -> tuple[int | None, int | None, int | None]:
        """onset, apex, offset of a value mapping, parsed the adapter's way (required ones first)."""
        c = self.columns
        names = dict(zip(KEYFRAMES, (c.onset, c.apex or "apex", c.offset), strict=True))
        opt = self.optional_keyframes
        parsed = {
            k: self.keyframe(values.get(k), names[k], missing_ok=k in opt)
            for k in sorted(KEYFRAMES, key=lambda k: k in opt)
        }
        return parsed["onset"], parsed["apex"], parsed["offset"]

    def _row(
        self,
        out: ScanResult,
        frames: FrameLister,
        table: FixTable,
        plan: AnchorPlan,
        row: SheetRow,
        intervals: dict[tuple[str, ...], int],
    ) -> None:
        anchored = plan.static.get(row.number, []) + plan.dynamic.get(row.number, [])
        if row.problem is not None:
            out.fail(row.problem)
            self._settle(anchored, "skipped", row, f"row {row.number} failed ({row.problem.reason})")
            return
        try:
            kind = self.kind(row)
        except ValueError as exc:
            out.fail(self._issue(row, exc, "bad_value"))
            self._settle(anchored, "skipped", row, f"row {row.number} failed (bad_value)")
            return
        if kind is None or (self.types != "all" and kind != self.types):
            self._settle(anchored, "skipped", row, f"row {row.number} is excluded by dataset.options.types")
            return
        if self.repeated_names:  # an exact repeat of a row is a duplicate, not a second expression
            span = (
                row.subject,
                row.cell(self.columns.name),
                row.cell(self.columns.onset),
                row.cell(self.columns.offset),
            )
            if span in intervals:
                out.fail(
                    self._issue(
                        row,
                        f"repeats row {intervals[span]} (same subject, {self.columns.name}, onset and "
                        "offset); remove the repeated row",
                        "duplicate_clip",
                    )
                )
                self._settle(anchored, "skipped", row, f"row {row.number} repeats row {intervals[span]}")
                return
            intervals[span] = row.number
        values = self.annotation(row)
        ids: list[str] = []
        for fix in table.for_clip(row.subject, row.name) + tuple(plan.static.get(row.number, [])):
            values.update(fix.values)
            ids.append(fix.id)
        self._settle(plan.static.get(row.number, []), "applied", row, f"applied to {row.clip_id}")
        if values.get("drop"):
            return
        clip, issue = self._clip(row, kind, values, tuple(ids), frames)
        dynamic = plan.dynamic.get(row.number, [])
        if dynamic and issue is None:
            self._settle(
                dynamic, "not_needed", row, f"row {row.number} ({row.clip_id}) builds as written; not applied"
            )
        elif dynamic:
            fixed = dict(values)
            for fix in dynamic:
                fixed.update(fix.values)
            clip2, issue2 = self._clip(row, kind, fixed, (*ids, *(f.id for f in dynamic)), frames)
            if issue2 is None:
                self._settle(
                    dynamic, "applied", row, f"applied to {row.clip_id} (it did not build: {issue.reason})"
                )
                clip, issue = clip2, None
            else:
                self._settle(
                    dynamic,
                    "did_not_repair",
                    row,
                    f"row {row.number} ({row.clip_id}) fails as written ({issue.reason}) and with the fix "
                    f"({issue2.reason}); not applied",
                )
        if clip is None:
            out.fail(issue)  # type: ignore[arg-type]
        else:
            out.add(clip, issue, file=self.sheet, row=row.number)

    def _settle(self, fixes: list[Fix], status: str, row: SheetRow, message: str) -> None:
        for fix in fixes:
            self._report[fix.id] = row_outcome(
                self.name, fix, status, self.sheet, row.number, row.subject, row.name, message
            )

    def _clip(
        self, row: SheetRow, kind: str, values: Mapping[str, Any], fixes: tuple[str, ...], frames: FrameLister
    ) -> tuple[ClipRecord | None, ClipIssue | None]:
        """The clip of a row with ``values`` (after fixes), checked against the disk."""
        try:
            onset, apex, offset = self._keyframes(values)
        except ValueError as exc:
            hint = f"fix the cell or add a fix to manifests/fixes/{self.name}.yaml"
            return None, self._issue(row, exc, "bad_value", hint)
        if self.end_at_apex and offset is None and apex is None:
            text = (
                "neither the offset nor the apex is annotated, so the interval has no end; "
                "add a fix with the offset"
            )
            return None, self._issue(row, text, "bad_value")
        try:
            folder = self.source(row, values)
        except ValueError as exc:
            return None, self._issue(row, exc, "bad_value")
        extra = self.extra(row)
        if offset is None and self.end_at_apex:
            extra["offset"] = "unknown in the sheet; clip cut at the apex"
        clip = ClipRecord(
            dataset=self.name,
            subject=row.subject,
            clip_id=row.clip_id,
            source_kind="images",
            source_path=str(folder),
            onset=onset,
            apex=apex,
            offset=offset,
            keyframe_source="annotated" if apex is not None else "apex_missing",
            emotion_raw=cell_str(values.get("emotion")),
            aus_raw=cell_str(values.get("aus")),
            fps=float(self.fps),
            expression_type=kind,  # type: ignore[arg-type]
            fixes=fixes,
            extra=extra,
        )
        issue = self.check(row, clip)
        if issue is not None:
            return clip, issue
        # frames listed numerically, validated against the sheet, cut to the annotated interval
        return finish_clip(clip, frames, sheet=self.sheet, row=row.number, end_at_apex=self.end_at_apex)
