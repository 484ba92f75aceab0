"""Evaluation folds derived from a manifest: leave-one-subject-out (LOSO), composite LOSO and
leave-one-dataset-out. Subjects are always keyed ``dataset/subject`` so composite builds never merge
two datasets' ``sub01``. Every fold is checked: no subject on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mepipe.records import ManifestRow


class FoldLeakError(AssertionError):
    """A subject (or dataset) appears in both the training and the test side of a fold."""


@dataclass(frozen=True)
class Fold:
    """One split. ``train``/``test`` are clip keys; ``held_out`` names the left-out group."""

    name: str
    held_out: str
    train: tuple[str, ...]
    test: tuple[str, ...]


def subject_key(row: ManifestRow) -> str:
    return f"{row.dataset}/{row.subject}"


def make_folds(rows: Sequence[ManifestRow], protocol: Literal["loso", "lodo"] = "loso") -> list[Fold]:
    """Folds over the ``ok`` rows: one per subject (``loso``) or per dataset (``lodo``), sorted by name."""
    ok = [r for r in rows if r.status == "ok"]
    group_of = subject_key if protocol == "loso" else (lambda r: r.dataset)
    groups = sorted({group_of(r) for r in ok})
    folds = []
    for g in groups:
        test = tuple(r.key for r in ok if group_of(r) == g)
        train = tuple(r.key for r in ok if group_of(r) != g)
        folds.append(Fold(f"{protocol}-{g}", g, train, test))
    check_folds(folds, ok)
    return folds


def check_folds(folds: Sequence[Fold], rows: Sequence[ManifestRow]) -> None:
    """Raise :class:`FoldLeakError` if any subject has clips on both sides of a fold."""
    subj = {r.key: subject_key(r) for r in rows}
    for f in folds:
        both = {subj[k] for k in f.train} & {subj[k] for k in f.test}
        if both:
            raise FoldLeakError(f"fold {f.name}: subject(s) {sorted(both)} on both train and test sides")
