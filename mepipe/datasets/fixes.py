"""Versioned annotation fixes, keyed by (dataset, subject, filename) -- never by row position.

Fix tables live in ``manifests/fixes/<dataset>.yaml``::

    version: 1
    fixes:
      - id: casme2-sub04-EP12_01f-apex     # unique, recorded in the manifest's ``fixes`` column
        subject: "sub04"                   # canonical subject id, as the adapter produces it
        filename: EP12_01f                 # the annotation's clip/file name
        set: {apex: 91}                    # fields to overwrite (onset/apex/offset/emotion/aus)
        reason: apex given as '/', value from the re-annotated coding file

Adapters call :func:`apply_fixes` on every row's values before validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml

from mepipe import resources
from mepipe.errors import AnnotationError

FIXABLE_FIELDS = ("onset", "apex", "offset", "emotion", "aus", "drop")


@dataclass(frozen=True)
class Fix:
    id: str
    subject: str
    filename: str
    values: dict[str, Any]
    reason: str


@cache
def load_fixes(dataset: str, path: str | None = None) -> dict[tuple[str, str], tuple[Fix, ...]]:
    """Read the fix table of ``dataset`` (``manifests/fixes/<dataset>.yaml``, or ``path``).

    Raises:
        ConfigError: the table does not exist (every adapter that applies fixes ships one, even if
            it holds no fix, so a missing file means a broken install or a wrong ``fixes`` option).
    """
    file = resources.resolve("fixes", path) if path else resources.find("fixes", dataset)
    doc = yaml.safe_load(file.read_text()) or {}
    table: dict[tuple[str, str], list[Fix]] = {}
    for i, entry in enumerate(doc.get("fixes") or [], start=1):
        missing = [k for k in ("id", "subject", "filename", "set", "reason") if k not in entry]
        if missing:
            raise AnnotationError(
                f"{file}: fix #{i} lacks {missing}; every fix needs id, subject, filename, set, reason"
            )
        bad = sorted(set(entry["set"]) - set(FIXABLE_FIELDS))
        if bad:
            raise AnnotationError(
                f"{file}: fix {entry['id']!r} sets unknown field(s) {bad}; allowed: {FIXABLE_FIELDS}"
            )
        fix = Fix(
            str(entry["id"]),
            str(entry["subject"]),
            str(entry["filename"]),
            dict(entry["set"]),
            str(entry["reason"]),
        )
        table.setdefault((fix.subject, fix.filename), []).append(fix)
    return {k: tuple(v) for k, v in table.items()}


def apply_fixes(
    dataset: str, subject: str, filename: str, values: dict[str, Any], path: str | None = None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Return ``values`` with every matching fix applied, and the ids of the fixes applied."""
    fixes = load_fixes(dataset, path).get((subject, filename), ())
    out = dict(values)
    for fix in fixes:
        out.update(fix.values)
    return out, tuple(f.id for f in fixes)
