"""Logging and progress for long work (builds, pre-training, LOSO folds).

Library code logs through the standard library (``logging.getLogger(__name__)``: every mepipe logger
is a child of ``"mepipe"``) and reports progress through :class:`Progress`. The command line calls
:func:`setup_logging` once; long jobs attach their own log file with :func:`log_file` (``OUT/build.log``,
``RUN/train.log``), which always receives every line at DEBUG level, whatever the console shows.

Progress is a rich bar (count, rate, elapsed, ETA) when stderr is a terminal, and plain periodic lines
("build casme2: 120/256 clips (47%), 3.2 clips/s, elapsed 0:00:37, ETA 0:00:42") when it is not
(nohup, SLURM, CI), so a redirected log grows while the job runs instead of staying empty.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = "mepipe"
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
PLAIN_INTERVAL_S = float(os.environ.get("MEPIPE_PROGRESS_INTERVAL", "30"))
"""Seconds between plain progress lines when stderr is not a terminal."""

_state = {"rich": False, "console": None}


def get_logger(name: str = ROOT) -> logging.Logger:
    """The logger ``name`` (a child of ``mepipe``; pass ``__name__`` from inside the package)."""
    return logging.getLogger(name if name.startswith(ROOT) else f"{ROOT}.{name}")


def console_is_terminal() -> bool:
    """True when stderr is an interactive terminal (rich bars), False for files and pipes."""
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


def setup_logging(verbosity: int = 0, *, rich: bool | None = None) -> None:
    """Configure the ``mepipe`` logger's console output (idempotent).

    Args:
        verbosity: ``-1`` quiet (warnings and errors only), ``0`` normal (info), ``1`` verbose (debug).
        rich: use a rich handler (colours, live progress bars); default: when stderr is a terminal.
    """
    log = logging.getLogger(ROOT)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    for h in [h for h in log.handlers if getattr(h, "_mepipe_console", False)]:
        log.removeHandler(h)
    use_rich = console_is_terminal() if rich is None else rich
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    handler: logging.Handler
    if use_rich:
        from rich.console import Console
        from rich.logging import RichHandler

        console = Console(stderr=True, soft_wrap=True)
        handler = RichHandler(console=console, show_path=False, markup=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
        _state["console"] = console
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT, "%H:%M:%S"))
        _state["console"] = None
    handler.setLevel(level)
    handler._mepipe_console = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    _state["rich"] = use_rich and verbosity >= 0


@contextlib.contextmanager
def log_file(path: str | os.PathLike, *, mode: str = "a") -> Iterator[Path]:
    """Copy every ``mepipe`` log line (DEBUG and up) into ``path`` while the block runs."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(p, mode=mode, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT, "%Y-%m-%d %H:%M:%S"))
    handler.setLevel(logging.DEBUG)
    log = logging.getLogger(ROOT)
    if log.level == logging.NOTSET or log.level > logging.DEBUG:
        log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    try:
        yield p
    finally:
        log.removeHandler(handler)
        handler.close()


def format_duration(seconds: float) -> str:
    """``3725.4`` -> ``"1:02:05"`` (``"?"`` when unknown)."""
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Progress:
    """Progress of one job: a count out of a (possibly unknown) total, with rate and ETA.

    Use as a context manager; call :meth:`advance` as work finishes. With a terminal and rich
    logging a live bar is drawn; otherwise a plain INFO line is logged at most every
    ``interval_s`` seconds, and always at the end.

    Args:
        description: what is being done (``"build casme2"``, ``"pretrain epoch 3/15"``).
        total: expected count (``None``: unknown until :meth:`set_total`).
        unit: what is counted (``clips``, ``pairs``, ``folds``).
        logger: where plain lines go (default: the ``mepipe`` logger).
        interval_s: seconds between plain lines.
        clock: time source (tests pass a fake one).
    """

    def __init__(
        self,
        description: str,
        total: int | None = None,
        *,
        unit: str = "items",
        logger: logging.Logger | None = None,
        interval_s: float = PLAIN_INTERVAL_S,
        clock=time.monotonic,
    ) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.done = 0
        self.info = ""
        self.logger = logger or logging.getLogger(ROOT)
        self.interval_s = interval_s
        self._clock = clock
        self._t0 = clock()
        self._last_line = self._t0
        self._bar = None
        self._task = None

    # -- numbers ---------------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        return self._clock() - self._t0

    @property
    def rate(self) -> float:
        """Items per second so far (0 before the first item)."""
        e = self.elapsed
        return self.done / e if e > 0 and self.done else 0.0

    @property
    def eta(self) -> float:
        """Seconds left at the current rate (``nan`` when unknown)."""
        if self.total is None or not self.rate:
            return float("nan")
        return max(self.total - self.done, 0) / self.rate

    def line(self) -> str:
        """The plain progress line (also used in logs and tests)."""
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        pct = f" ({100.0 * self.done / self.total:.0f}%)" if self.total else ""
        text = (
            f"{self.description}: {count} {self.unit}{pct}, {self.rate:.2f} {self.unit}/s, "
            f"elapsed {format_duration(self.elapsed)}, ETA {format_duration(self.eta)}"
        )
        return text + (f"; {self.info}" if self.info else "")

    # -- updates ---------------------------------------------------------------------------------
    def set_total(self, total: int) -> None:
        self.total = int(total)
        if self._bar is not None:
            self._bar.update(self._task, total=self.total)

    def advance(self, n: int = 1, info: str | None = None) -> None:
        """Count ``n`` more finished items; ``info`` is a short status shown with the count
        (``"loss 0.071"``)."""
        self.done += n
        if info is not None:
            self.info = info
        if self._bar is not None:
            rate = f"{self.rate:.2f} {self.unit}/s"
            self._bar.update(self._task, advance=n, info=self.info, rate=rate)
            return
        now = self._clock()
        if now - self._last_line >= self.interval_s:
            self._last_line = now
            self.logger.info(self.line())

    def __enter__(self) -> Progress:
        if _state["rich"] and _state["console"] is not None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=_state["console"],
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, info="", rate="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        self.logger.info(self.line() if exc[0] is None else f"{self.line()} (stopped: {exc[1]!r})")
