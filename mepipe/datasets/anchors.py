"""Checking row-anchored fixes against the rows they point at, and reporting what became of each.

The table format and the meaning of ``anchor`` / ``expect`` / ``group`` are in
:mod:`mepipe.datasets.fixes`. :func:`plan_anchored` decides, before any row is built, which anchored
fixes hold (their row holds what they expect, their fixed keyframes are in order, their group agrees);
the row scan (:mod:`mepipe.datasets.rowscan`) applies them, tries the ``buildable: false`` ones on the
rows that do not build, and records one :class:`FixOutcome` per fix in ``ScanResult.fix_report``;
:func:`warn_unmatched` logs the ones that did not fit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mepipe.datasets.fixes import KEYFRAMES, MISSING, Fix, FixTable
from mepipe.datasets.sheets import MISSING_MARKS, cell_int, cell_str, is_blank
from mepipe.logs import get_logger

log = get_logger(__name__)

#: Outcomes of an anchored fix. ``applied`` and ``already_correct`` are fine; ``skipped`` means the
#: row was not built (e.g. excluded by ``dataset.options.types``); every other status means the fix
#: did not fit this coding file and was left out -- logged as a warning and reported.
STATUSES = (
    "applied",
    "already_correct",
    "skipped",
    "mismatch",
    "withheld",
    "other_file",
    "not_needed",
    "did_not_repair",
    "unused",
)
UNMATCHED = frozenset(STATUSES[3:])


@dataclass(frozen=True)
class FixOutcome:
    """What happened to one fix on one build: applied, or why not.

    Attributes:
        dataset, fix_id: the adapter and the fix.
        status: one of :data:`STATUSES`.
        file: the coding file read; row: the Excel row the fix points at (``None`` for keyed fixes).
        subject, filename: the clip the row resolved to ('' when it did not resolve).
        expected, found: the checked values, as the table gives them and as the row holds them.
        message: one sentence for the build summary.
        source: where the correction comes from (the table's ``source``).
    """

    dataset: str
    fix_id: str
    status: str
    file: str
    row: int | None
    subject: str = ""
    filename: str = ""
    expected: dict[str, str] = field(default_factory=dict)
    found: dict[str, str] = field(default_factory=dict)
    message: str = ""
    source: str = ""

    @property
    def unmatched(self) -> bool:
        """True when the fix was left out because it did not fit (a warning)."""
        return self.status in UNMATCHED

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_missing(v: Any) -> bool:
    return is_blank(v) or cell_str(v) in MISSING_MARKS


def _same(field_name: str, have: Any, want: Any) -> bool:
    """Does the cell ``have`` hold the table value ``want``?"""
    if field_name in KEYFRAMES:
        if str(want).strip().lower() == MISSING:
            return _is_missing(have)
        try:
            return cell_int(have, field_name) == int(want)
        except (TypeError, ValueError):
            return False
    if isinstance(want, Mapping) and "contains" in want:
        return str(want["contains"]).lower() in cell_str(have).lower()
    return cell_str(have).lower() == cell_str(want).lower()


def _shown(want: Any) -> str:
    return f"contains {want['contains']!r}" if isinstance(want, Mapping) else cell_str(want)


def ordered(onset: int | None, apex: int | None, offset: int | None) -> bool:
    """``onset <= apex <= offset`` over the keyframes that are known."""
    known = [v for v in (onset, apex, offset) if v is not None]
    return all(a <= b for a, b in zip(known, known[1:], strict=False))


@dataclass
class AnchorPlan:
    """The anchored fixes of one sheet, decided before the rows are built.

    Attributes:
        static: Excel row -> fixes to apply (their expectations held).
        dynamic: Excel row -> ``buildable: false`` fixes, tried when the row does not build as written.
        outcomes: fixes already decided (mismatch, withheld, other_file, already_correct).
    """

    static: dict[int, list[Fix]] = field(default_factory=dict)
    dynamic: dict[int, list[Fix]] = field(default_factory=dict)
    outcomes: list[FixOutcome] = field(default_factory=list)


def plan_anchored(
    dataset: str,
    table: FixTable,
    sheet: Path,
    header_row: int,
    rows: Mapping[int, Mapping[str, Any]],
    keyframes: Callable[[Mapping[str, Any]], tuple[int | None, int | None, int | None]],
) -> AnchorPlan:
    """Check every anchored fix of ``table`` against the row it points at.

    Args:
        dataset: adapter name (for the outcomes).
        table: the fix table.
        sheet: the coding file read (its name is compared with ``anchor.files``).
        header_row: Excel row of the header (0 when the sheet has none).
        rows: Excel row -> the row's fields as written: ``subject`` (canonical, '' if it did not
            parse), ``filename``, ``onset``, ``apex``, ``offset``, ``emotion``, ``aus``.
        keyframes: parses a field mapping's onset/apex/offset the adapter's way (raises ValueError).
    """
    plan = AnchorPlan()
    decided: dict[str, FixOutcome] = {}
    passed: list[tuple[Fix, int]] = []

    def outcome(fix: Fix, status: str, row: int | None, fields: Mapping[str, Any], text: str) -> FixOutcome:
        found = {k: cell_str(fields.get(k)) for k in fix.expect if k in fields}
        subject, filename = cell_str(fields.get("subject")), cell_str(fields.get("filename"))
        return row_outcome(dataset, fix, status, sheet, row, subject, filename, text, found)

    for fix in table.anchored:
        assert fix.anchor is not None
        where = f"{sheet.name} {fix.anchor.describe()}"
        if fix.anchor.files and sheet.name not in fix.anchor.files:
            decided[fix.id] = outcome(
                fix,
                "other_file",
                None,
                {},
                f"written for {list(fix.anchor.files)}, this build reads {sheet.name}; not applied",
            )
            continue
        number = fix.anchor.excel_row(header_row)
        fields = rows.get(number)
        if fields is None:
            decided[fix.id] = outcome(
                fix, "mismatch", number, {}, f"{where} (Excel row {number}) holds no clip; not applied"
            )
            continue
        wanted = {k: v for k, v in fix.values.items() if k != "drop"}
        if wanted and all(_same(k, fields.get(k), v) for k, v in wanted.items()):
            decided[fix.id] = outcome(
                fix, "already_correct", number, fields, f"{where} already holds {wanted}; nothing to do"
            )
            continue
        wrong = [k for k, v in fix.expect.items() if k != "buildable" and not _same(k, fields.get(k), v)]
        if wrong:
            shown = ", ".join(
                f"{k} {cell_str(fields.get(k))!r} (expected {_shown(fix.expect[k])})" for k in wrong
            )
            decided[fix.id] = outcome(
                fix,
                "mismatch",
                number,
                fields,
                f"{where} (Excel row {number}) holds {shown}: another version or a re-sorted sheet; "
                "not applied",
            )
            continue
        passed.append((fix, number))

    # the fixed keyframes of a row must be in order (all static fixes of the row together)
    by_row: dict[int, list[Fix]] = {}
    for fix, number in passed:
        if fix.expect.get("buildable") is not False:
            by_row.setdefault(number, []).append(fix)
    for number, fixes in by_row.items():
        merged = dict(rows[number])
        for fix in fixes:
            merged.update(fix.values)
        try:
            fixed = keyframes(merged)
            good = ordered(*fixed)
            text = f"the fixed keyframes {fixed} are out of order"
        except ValueError as exc:
            good, text = False, f"the fixed row does not parse ({exc})"
        if not good:
            for fix in fixes:
                decided[fix.id] = outcome(
                    fix, "mismatch", number, rows[number], f"row {number}: {text}; not applied"
                )

    # a group stands or falls together
    failed_groups = {
        f.group: fid
        for f in table.anchored
        if f.group and (fid := f.id) in decided and decided[fid].status in ("mismatch", "other_file")
    }
    for fix, number in passed:
        if fix.id in decided:
            continue
        if fix.group in failed_groups:
            n_bad = sum(
                1
                for f in table.anchored
                if f.group == fix.group and f.id in decided and decided[f.id].unmatched
            )
            decided[fix.id] = outcome(
                fix,
                "withheld",
                number,
                rows[number],
                f"row {number} matches, but {n_bad} other fix(es) of group {fix.group} do not (e.g. "
                f"{failed_groups[fix.group]}): this is not the file version the group was written for; "
                "not applied",
            )
            continue
        target = plan.dynamic if fix.expect.get("buildable") is False else plan.static
        target.setdefault(number, []).append(fix)
    plan.outcomes = [decided[f.id] for f in table.anchored if f.id in decided]
    return plan


def row_outcome(
    dataset: str,
    fix: Fix,
    status: str,
    sheet: Path,
    row: int | None,
    subject: str,
    filename: str,
    message: str,
    found: dict[str, str] | None = None,
) -> FixOutcome:
    """The outcome of anchored fix ``fix`` on ``row`` of ``sheet`` (which resolved to ``subject/filename``)."""
    expected = {k: _shown(v) for k, v in fix.expect.items()}
    return FixOutcome(
        dataset,
        fix.id,
        status,
        str(sheet),
        row,
        subject,
        filename,
        expected,
        found or {},
        message,
        fix.source,
    )


def unused_keyed(
    dataset: str, table: FixTable, seen: Iterable[tuple[str, str]], sheet: Path
) -> list[FixOutcome]:
    """Outcomes for the keyed fixes whose (subject, filename) no row of the sheet has."""
    present = set(seen)
    return [
        FixOutcome(
            dataset,
            fix.id,
            "unused",
            str(sheet),
            None,
            fix.subject,
            fix.filename,
            message=f"no row of {sheet.name} is {fix.subject}/{fix.filename}; the fix is not used "
            f"(check the subject spelling, or remove it from {table.path})",
            source=fix.source,
        )
        for key, fixes in table.keyed.items()
        if key not in present
        for fix in fixes
    ]


def warn_unmatched(dataset: str, table: FixTable, outcomes: Iterable[FixOutcome]) -> None:
    """Log the fixes that did not fit: one warning per group (a whole table written for another
    version is one line, not twenty), one per ungrouped fix; every fix in detail at debug level."""
    groups = {f.id: f.group for f in table.anchored}
    by_group: dict[str, list[FixOutcome]] = {}
    for o in outcomes:
        if o.unmatched:
            log.debug("%s: fix %s not applied (%s): %s", dataset, o.fix_id, o.status, o.message)
            by_group.setdefault(groups.get(o.fix_id) or o.fix_id, []).append(o)
    for group, items in by_group.items():
        counts = ", ".join(f"{n} {s}" for s, n in sorted(Counter(o.status for o in items).items()))
        what = f"fix {items[0].fix_id}" if len(items) == 1 else f"{len(items)} fixes of group {group}"
        log.warning(
            "%s: %s not applied (%s): %s; every fix's outcome is in build-info.json (fix_report)",
            dataset,
            what,
            counts,
            items[0].message,
        )
