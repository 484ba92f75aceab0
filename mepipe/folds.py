"""Evaluation folds derived from a manifest: leave-one-subject-out (LOSO), composite LOSO and
leave-one-dataset-out (LODO). Subjects are always keyed ``dataset/subject`` so composite builds never
merge two datasets' ``sub01``. Every fold is checked: no subject on both sides.

* ``make_folds(rows, "loso")``: one fold per ``dataset/subject`` (MEGC2019: 68 folds).
* ``make_folds(rows, "loso", per_dataset=True)``: LOSO inside each dataset of a composite build (the
  training side only holds the held-out subject's own dataset).
* ``make_folds(rows, "lodo")``: one fold per dataset.
* ``scheme=``: keep only the clips a label scheme labels (e.g. ``casme2_5`` drops fear/sadness), so
  no fold holds a clip without a class.

The fold maths (:func:`folds_over`, :func:`check_folds`) works on anything with ``key``, ``dataset``
and ``subject`` (:class:`FoldClip`: manifest rows, the trainer's clips); :func:`make_folds` first
selects the manifest rows to fold.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from typing import Protocol as TypingProtocol

from mepipe.labels import LabelScheme, load_scheme
from mepipe.records import ManifestRow, subject_key

Protocol = Literal["loso", "lodo"]


class FoldClip(TypingProtocol):
    """What folding needs from a clip (``ManifestRow`` and ``mepipe.train.frames.ClipInfo`` fit)."""

    @property
    def key(self) -> str: ...

    @property
    def dataset(self) -> str: ...

    @property
    def subject(self) -> str: ...


class FoldLeakError(AssertionError):
    """A subject (or dataset) appears in both the training and the test side of a fold."""


@dataclass(frozen=True)
class Fold:
    """One split. ``train``/``test`` are clip keys; ``held_out`` names the left-out group."""

    name: str
    held_out: str
    train: tuple[str, ...]
    test: tuple[str, ...]


def _scheme(scheme: LabelScheme | str | None) -> LabelScheme | None:
    return load_scheme(scheme) if isinstance(scheme, str) else scheme


def select_rows(
    rows: Sequence[ManifestRow],
    *,
    scheme: LabelScheme | str | None = None,
    datasets: Sequence[str] | None = None,
) -> list[ManifestRow]:
    """The ``ok`` rows, restricted to ``datasets`` and to the clips ``scheme`` labels (when given)."""
    sch = _scheme(scheme)
    out = []
    for r in rows:
        if r.status != "ok" or (datasets and r.dataset not in datasets):
            continue
        if sch is not None and sch.label(r.dataset, r.emotion_raw) is None:
            continue
        out.append(r)
    return out


def make_folds(
    rows: Sequence[ManifestRow],
    protocol: Protocol = "loso",
    *,
    scheme: LabelScheme | str | None = None,
    datasets: Sequence[str] | None = None,
    per_dataset: bool = False,
) -> list[Fold]:
    """Folds over the selected ``ok`` rows (see :func:`select_rows`), sorted by name.

    Args:
        protocol: ``loso`` (one fold per ``dataset/subject``) or ``lodo`` (one per dataset).
        scheme: keep only clips this label scheme labels.
        datasets: keep only these datasets.
        per_dataset: LOSO only -- train on the held-out subject's own dataset (per-dataset LOSO inside a
            composite build) instead of on every other subject.

    Raises:
        ValueError: unknown protocol, or ``per_dataset`` with ``lodo``.
        FoldLeakError: if a subject ended up on both sides (a bug, never expected).
    """
    return folds_over(select_rows(rows, scheme=scheme, datasets=datasets), protocol, per_dataset=per_dataset)


def folds_over(
    clips: Sequence[FoldClip], protocol: Protocol = "loso", *, per_dataset: bool = False
) -> list[Fold]:
    """Folds over exactly ``clips`` (already selected), sorted by name; see :func:`make_folds`.

    Raises:
        ValueError: unknown protocol, or ``per_dataset`` with ``lodo``.
        FoldLeakError: if a subject ended up on both sides (a bug, never expected).
    """
    if protocol not in ("loso", "lodo"):
        raise ValueError(f"protocol {protocol!r} is not loso or lodo")
    if per_dataset and protocol != "loso":
        raise ValueError("per_dataset applies to loso only")
    group_of = subject_key if protocol == "loso" else (lambda r: r.dataset)
    groups = sorted({group_of(r) for r in clips})
    folds = []
    for g in groups:
        test = tuple(r.key for r in clips if group_of(r) == g)
        ds = g.split("/", 1)[0]
        train = tuple(r.key for r in clips if group_of(r) != g and (not per_dataset or r.dataset == ds))
        folds.append(Fold(f"{protocol}-{g}", g, train, test))
    check_folds(folds, clips, protocol)
    return folds


def check_folds(folds: Sequence[Fold], rows: Sequence[FoldClip], protocol: Protocol = "loso") -> None:
    """Raise :class:`FoldLeakError` if a subject (LOSO) or dataset (LODO) has clips on both sides of a fold,
    or a fold's test side mixes groups."""
    by_key = {r.key: r for r in rows}
    group_of = subject_key if protocol == "loso" else (lambda r: r.dataset)
    for f in folds:
        subj_train = {subject_key(by_key[k]) for k in f.train}
        subj_test = {subject_key(by_key[k]) for k in f.test}
        both = subj_train & subj_test
        if both:
            raise FoldLeakError(f"fold {f.name}: subject(s) {sorted(both)} on both train and test sides")
        groups = {group_of(by_key[k]) for k in f.test}
        if groups != {f.held_out}:
            raise FoldLeakError(
                f"fold {f.name}: test side holds {sorted(groups)}, expected only {f.held_out}"
            )
        if protocol == "lodo" and f.held_out in {by_key[k].dataset for k in f.train}:
            raise FoldLeakError(f"fold {f.name}: dataset {f.held_out} on both sides")


FOLD_COLUMNS = ("fold", "held_out", "split", "key", "dataset", "subject", "emotion_raw", "label", "class")


def write_folds_csv(
    folds: Sequence[Fold],
    rows: Sequence[ManifestRow],
    path: str | Path,
    scheme: LabelScheme | str | None = None,
) -> Path:
    """Write the folds in long form: one line per (fold, clip) with ``split`` = ``train`` or ``test``.

    ``label`` is the scheme's class index and ``class`` its name (empty without a scheme); the raw
    emotion is always kept.
    """
    sch = _scheme(scheme)
    by_key = {r.key: r for r in rows}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FOLD_COLUMNS)
        for fold in folds:
            for split, keys in (("test", fold.test), ("train", fold.train)):
                for k in keys:
                    r = by_key[k]
                    idx = sch.label(r.dataset, r.emotion_raw) if sch is not None else None
                    w.writerow(
                        [
                            fold.name,
                            fold.held_out,
                            split,
                            k,
                            r.dataset,
                            r.subject,
                            r.emotion_raw,
                            "" if idx is None else idx,
                            "" if idx is None or sch is None else sch.classes[idx],
                        ]
                    )
    return path
