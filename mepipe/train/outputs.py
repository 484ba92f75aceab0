"""The run folder: refusing/replacing/resuming it, ``train.log``, history files, TensorBoard, provenance.

Every training run writes into ``RUN/`` (``run.out``)::

    train.resolved.yaml   the resolved config (marks the folder as a mepipe run)
    train.log             every log line of the run, DEBUG level included (appended on resume)
    history.jsonl/.csv    one record per epoch (fine-tuning: per fold in folds/<fold>/, pooled in RUN/)
    curves.png            loss and learning rate (fine-tuning: per-fold training accuracy too)
    tensorboard/          TensorBoard scalars (``run.tensorboard: true`` only)

Nothing is written before the run is known to be valid: :func:`check_run_dir` only looks, and
:class:`RunFolder` (entered once the data and the checkpoints to start from have been read) creates
the files. An existing run is refused unless ``run.resume`` (continue it) or ``run.force`` (delete it
and start again); a folder holding anything other than a mepipe run is never deleted.
"""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from mepipe.errors import ConfigError
from mepipe.logs import get_logger, log_file
from mepipe.train.config import RESOLVED_NAME, AnyConfig, config_to_dict, write_resolved
from mepipe.train.ddp import barrier

log = get_logger(__name__)
LOG_NAME = "train.log"
TENSORBOARD_DIR = "tensorboard"
IGNORED_ON_RESUME = ("run.resume", "run.force", "optim.epochs")


def check_run_dir(out: str, *, resume: bool, force: bool, kind: str) -> Path:
    """Decide whether a run may use ``out``; reads only.

    Raises:
        ConfigError: no folder given; an existing run without ``resume``/``force``; a run of the other
            kind to resume; a non-empty folder that is not a mepipe run.
    """
    if not out:
        raise ConfigError("run.out: no run folder given; pass --out RUN")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file; give a folder for the run")
    if not path.is_dir() or not any(path.iterdir()):
        return path
    marker = path / RESOLVED_NAME
    if not marker.is_file():
        raise ConfigError(
            f"--out {path} is not empty and holds no mepipe run ({RESOLVED_NAME} missing); mepipe will "
            "not write into or delete it: choose a new or empty folder"
        )
    if force:
        return path
    if not resume:
        raise ConfigError(
            f"{path} already holds a run; pass --resume to continue it, --force to replace it, or "
            "choose another --out"
        )
    saved = yaml.safe_load(marker.read_text()) or {}
    if saved.get("kind") not in (None, kind):
        raise ConfigError(f"--resume: {path} holds a {saved.get('kind')!r} run, not a {kind!r} run")
    return path


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flat(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def resume_differences(out: Path, cfg: AnyConfig) -> dict[str, tuple[Any, Any]]:
    """Keys whose value differs from the run being resumed (``{key: (saved, now)}``), ignoring
    :data:`IGNORED_ON_RESUME`."""
    marker = out / RESOLVED_NAME
    if not marker.is_file():
        return {}
    saved = _flat(yaml.safe_load(marker.read_text()) or {})
    now = _flat(config_to_dict(cfg))
    return {
        k: (saved.get(k), v)
        for k, v in now.items()
        if k not in IGNORED_ON_RESUME and saved.get(k) != (list(v) if isinstance(v, tuple) else v)
    }


def require_tensorboard() -> type:
    """``torch.utils.tensorboard.SummaryWriter``, imported only when TensorBoard logging is on.

    Raises:
        ConfigError: the ``tensorboard`` package is not installed.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ConfigError(
            f"run.tensorboard=true needs the tensorboard package ({exc}); install it with "
            "`pip install 'mepipe[tensorboard]'` or set run.tensorboard=false"
        ) from None
    return SummaryWriter


class RunFolder(contextlib.AbstractContextManager):
    """Creates the run's files on rank 0 and holds ``train.log`` and TensorBoard open while it runs.

    Args:
        out: the folder (checked by :func:`check_run_dir`).
        cfg: the resolved config (written to ``train.resolved.yaml``).
        is_main: rank 0 (other ranks write nothing).
    """

    def __init__(self, out: Path, cfg: AnyConfig, is_main: bool = True) -> None:
        self.out, self.cfg, self.is_main = out, cfg, is_main
        self.tensorboard: Any = None
        self._stack = contextlib.ExitStack()
        self._writer_cls = require_tensorboard() if cfg.run.tensorboard else None

    def __enter__(self) -> RunFolder:
        barrier()  # every rank has checked the folder before rank 0 changes it
        if not self.is_main:
            return self
        resumed = self.cfg.run.resume and (self.out / RESOLVED_NAME).is_file()
        diffs = resume_differences(self.out, self.cfg) if resumed else {}
        if self.cfg.run.force and self.out.is_dir() and (self.out / RESOLVED_NAME).is_file():
            shutil.rmtree(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self._stack.enter_context(log_file(self.out / LOG_NAME))
        if diffs:
            log.warning("resuming with settings changed since the run started (saved -> now): %s", diffs)
        write_resolved(self.cfg, self.out)
        if self._writer_cls is not None:
            self.tensorboard = self._writer_cls(log_dir=str(self.out / TENSORBOARD_DIR))
            self._stack.callback(self.tensorboard.close)
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None and self.is_main:
            log.error("run stopped: %s: %s", getattr(exc[0], "__name__", exc[0]), exc[1])
        self._stack.close()

    def history(self, folder: Path, tag: str) -> HistoryWriter:
        """A :class:`HistoryWriter` for ``folder`` with TensorBoard tags under ``tag``."""
        return HistoryWriter(folder, self.tensorboard, tag)


def write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> Path:
    """Write ``rows`` with ``columns`` (default: every key, in order of first appearance)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)
    return path


def _number(text: str) -> Any:
    if text == "":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV written by :func:`write_csv`, numbers cast back (empty cells are ``None``)."""
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in r.items()} for r in csv.DictReader(f)]


def write_json(path: Path, data: Any) -> Path:
    """Write JSON atomically (``path.tmp`` then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=True))
    tmp.replace(path)
    return path


class HistoryWriter:
    """Receives the growing history after every epoch: appends the new record to ``history.jsonl``,
    rewrites ``history.csv`` and adds the numbers to TensorBoard (``tag/key``, step = epoch)."""

    def __init__(self, folder: Path, tensorboard: Any = None, tag: str = "") -> None:
        self.folder, self.tensorboard, self.tag = folder, tensorboard, tag

    def __call__(self, history: list[dict[str, Any]]) -> None:
        rec = history[-1]
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "history.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        write_csv(self.folder / "history.csv", history)
        if self.tensorboard is not None:
            for k, v in rec.items():
                if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.tensorboard.add_scalar(f"{self.tag}/{k}" if self.tag else k, v, rec["epoch"])
            self.tensorboard.flush()


def build_pipeline(build_dir: str | Path) -> dict[str, Any]:
    """The build's resolved pipeline (``pipeline.resolved.yaml``), ``{}`` when the build has none."""
    p = Path(build_dir) / "pipeline.resolved.yaml"
    if not p.is_file():
        log.warning(
            "%s has no pipeline.resolved.yaml; the run cannot record how the frames were made", build_dir
        )
        return {}
    return yaml.safe_load(p.read_text()) or {}


def run_provenance(build_dir: str | Path, shard: str | None = None) -> dict[str, Any]:
    """What a run's numbers came from: library versions, the git commit, the build's config hash and
    the manifest's sha256.

    The config hash and pipeline name are read from ``build-info.json`` or, for builds without one,
    from the attributes of ``shard`` (any shard of the build).

    Returns:
        ``{"versions": {...}, "git_commit": str, "build": {"path", "pipeline", "config_hash",
        "manifest_sha256"}}``.
    """
    import h5py

    from mepipe.provenance import file_sha256, git_commit, library_versions

    root = Path(build_dir)
    build: dict[str, Any] = {"path": str(root.resolve()), "pipeline": "", "config_hash": ""}
    info = root / "build-info.json"
    if info.is_file():
        data = json.loads(info.read_text())
        build["pipeline"], build["config_hash"] = (
            str(data.get("pipeline", "")),
            str(data.get("config_hash", "")),
        )
    elif shard is not None and Path(shard).is_file():
        with h5py.File(shard, "r") as f:
            build["pipeline"] = str(f.attrs.get("pipeline", ""))
            build["config_hash"] = str(f.attrs.get("config_hash", ""))
    build["manifest_sha256"] = file_sha256(root / "manifest.csv")
    return {"versions": library_versions(), "git_commit": git_commit(), "build": build}
