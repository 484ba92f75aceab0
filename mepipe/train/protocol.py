"""Leak-free evaluation splits: training / validation / held-out test for every fold.

The guard works by construction:

* :func:`plan_folds` builds a :class:`FoldPlan` per fold. Its ``train`` and ``val`` clips come from
  training subjects only; the test clips sit inside a :class:`HeldOut` object that does not expose
  them as a sequence.
* The training routine (:func:`mepipe.train.finetune.fit`) receives ``train`` and ``val`` only.
* The test clips are released exactly once, by :meth:`HeldOut.release`, to the evaluation function
  (:func:`mepipe.train.evaluate.evaluate_held_out`), which receives a trained model and nothing of the
  optimiser or the epoch choice. A second release raises :class:`PeekingError`.
* Asking for validation on a subject that is held out (or overlaps the test side) raises
  :class:`PeekingError`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mepipe.errors import ConfigError, MepipeError
from mepipe.folds import Fold, FoldLeakError, folds_over
from mepipe.train.frames import ClipInfo


class PeekingError(MepipeError):
    """Something tried to use held-out (test) clips for training, validation or selection."""


class HeldOut:
    """The test clips of one fold; :meth:`release` hands them out exactly once.

    Only aggregate facts (fold name, held-out group, number of clips) are readable before release.
    """

    def __init__(self, fold: str, held_out: str, clips: Sequence[ClipInfo]) -> None:
        self.fold = fold
        self.held_out = held_out
        self.__clips = tuple(clips)
        self._released = False

    def __len__(self) -> int:
        return len(self.__clips)

    def __repr__(self) -> str:
        return f"HeldOut(fold={self.fold!r}, held_out={self.held_out!r}, n={len(self)}, released={self._released})"

    @property
    def released(self) -> bool:
        return self._released

    def subjects(self) -> set[str]:
        """Subject keys on the test side (for leak checks only)."""
        return {c.subject_key for c in self.__clips}

    def release(self) -> tuple[ClipInfo, ...]:
        """The test clips, once; a second call raises :class:`PeekingError`."""
        if self._released:
            raise PeekingError(
                f"fold {self.fold}: the held-out clips were already evaluated once; "
                "evaluating again would allow selection on the test subject"
            )
        self._released = True
        return self.__clips


@dataclass
class FoldPlan:
    """One fold, ready to train: ``train``/``val`` from training subjects, ``test`` sealed.

    Attributes:
        name: fold name (``loso-casme2/sub01``).
        held_out: the left-out subject (``casme2/sub01``) or dataset (``lodo``).
        train: training clips.
        val: validation clips (training subjects carved out; empty: fixed epoch budget).
        test: the sealed held-out clips.
    """

    name: str
    held_out: str
    train: tuple[ClipInfo, ...]
    val: tuple[ClipInfo, ...]
    test: HeldOut = field(repr=False)

    @property
    def val_subjects(self) -> list[str]:
        return sorted({c.subject_key for c in self.val})


def make_plan(fold: Fold, clips: Sequence[ClipInfo], val: int | Sequence[str] = 0, seed: int = 0) -> FoldPlan:
    """Turn a :class:`~mepipe.folds.Fold` into a :class:`FoldPlan`, carving validation subjects.

    Args:
        fold: the fold (clip keys on each side).
        clips: all clips (looked up by key).
        val: how many training subjects to move into validation (chosen with ``seed``), or an
            explicit list of subject keys (``dataset/subject``). Listing a subject on the test side
            raises :class:`PeekingError`.
        seed: selects the validation subjects when ``val`` is a count.

    Raises:
        PeekingError: a validation subject is held out in this fold.
        FoldLeakError: a subject appears on both the training and the test side.
    """
    by_key = {c.key: c for c in clips}
    train = [by_key[k] for k in fold.train]
    test = [by_key[k] for k in fold.test]
    test_subjects = {c.subject_key for c in test}
    train_subjects = sorted({c.subject_key for c in train})
    if test_subjects & set(train_subjects):
        raise FoldLeakError(
            f"fold {fold.name}: subjects {sorted(test_subjects & set(train_subjects))} on both sides"
        )
    if not train:
        raise ConfigError(
            f"fold {fold.name}: no training clips are left when {fold.held_out} is held out "
            "(lodo needs at least two datasets; loso at least two subjects)"
        )
    if isinstance(val, int):
        if val and val >= len(train_subjects):
            raise PeekingError(
                f"fold {fold.name}: cannot carve {val} validation subject(s) from "
                f"{len(train_subjects)} training subject(s); lower protocol.val_subjects"
            )
        rng = np.random.default_rng([seed, zlib.crc32(fold.name.encode())])
        chosen = set(rng.choice(train_subjects, size=val, replace=False).tolist()) if val else set()
    else:
        chosen = set(val)
        bad = sorted(chosen & (test_subjects | {fold.held_out}))
        if bad:
            raise PeekingError(
                f"fold {fold.name}: validation subject(s) {bad} are held out for testing; "
                "validation must come from training subjects only"
            )
        unknown = sorted(chosen - set(train_subjects))
        if unknown:
            raise PeekingError(
                f"fold {fold.name}: validation subject(s) {unknown} are not training subjects "
                f"of this fold (training subjects: {train_subjects})"
            )
    tr = tuple(c for c in train if c.subject_key not in chosen)
    va = tuple(c for c in train if c.subject_key in chosen)
    return FoldPlan(fold.name, fold.held_out, tr, va, HeldOut(fold.name, fold.held_out, test))


def plan_folds(
    clips: Sequence[ClipInfo],
    protocol: str = "loso",
    val_subjects: int = 0,
    seed: int = 0,
    only: Sequence[str] = (),
    per_dataset: bool = False,
) -> list[FoldPlan]:
    """Folds over ``clips`` (``loso``: one per ``dataset/subject``; ``lodo``: one per dataset).

    Args:
        clips: labelled clips (clips excluded by the label scheme are already dropped).
        protocol: ``loso`` or ``lodo``.
        val_subjects: training subjects per fold moved to validation (0: none).
        seed: picks the validation subjects.
        only: keep only folds with these names (empty: all).
        per_dataset: composite builds, LOSO only: train each fold on the held-out subject's own
            dataset (per-dataset LOSO) instead of every other subject.
    """
    if protocol not in ("loso", "lodo"):
        raise ValueError(f"protocol must be loso or lodo, got {protocol!r}")
    folds = folds_over(clips, protocol, per_dataset=per_dataset)  # type: ignore[arg-type]
    if only:
        missing = sorted(set(only) - {f.name for f in folds})
        if missing:
            raise ConfigError(
                f"protocol.folds: unknown fold(s) {missing}; available: {[f.name for f in folds]}"
            )
        folds = [f for f in folds if f.name in set(only)]
    return [make_plan(f, clips, val_subjects, seed) for f in folds]
