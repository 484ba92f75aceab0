"""The lock on a build folder: one build (or ``--force`` rebuild) of ``OUT`` at a time.

``OUT/build.lock`` is locked with ``fcntl.flock`` (advisory, exclusive) for as long as a build runs
and holds JSON naming the holder: pid, host, start time, command, and a heartbeat the holder rewrites
every :data:`HEARTBEAT_S` seconds. A second build is refused, with or without ``--force``, with a
message naming the running one.

Stale locks: the kernel releases a flock when its process dies (also on ``kill -9``), so a lock file
left by a dead build on a local filesystem is simply taken over. On NFS the Linux client turns flock
into an NFS byte-range lock (NFSv4, or NFSv3 with the lock daemon), which the server releases when the
holder's host stops renewing its lease; on a mount without locking (``nolock``), or on filesystems that
keep locks per host, flock only excludes processes on the same host. So the holder recorded in the
file is checked too: a holder on another host whose heartbeat is younger than :data:`STALE_S` refuses
the build even when flock succeeded; an older one is taken over (the log says so).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from mepipe.errors import MepipeError

LOCK_NAME = "build.lock"
HEARTBEAT_S = float(os.environ.get("MEPIPE_LOCK_HEARTBEAT", "30"))
"""Seconds between heartbeats written by the lock holder."""
STALE_S = float(os.environ.get("MEPIPE_LOCK_STALE", "300"))
"""A lock whose holder is on another host and has not written a heartbeat for this long is stale."""


class BuildLockedError(MepipeError):
    """Another build holds the lock on the output folder."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe(holder: dict) -> str:
    """``pid 123 on host node7 since 2026-12-01T10:00:00+00:00 (mepipe build-dataset ...)``."""
    cmd = holder.get("command") or ""
    return (
        f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} since {holder.get('started', '?')}"
        + (f" ({cmd})" if cmd else "")
    )


class BuildLock:
    """Exclusive lock on ``out_dir`` (a context manager).

    Args:
        out_dir: the build folder (created if missing).
        command: what is running, recorded for the message another build shows.

    Raises:
        BuildLockedError: on entry, when a live build holds the folder (the message names it).
    """

    def __init__(self, out_dir: str | Path, command: str = "") -> None:
        self.path = Path(out_dir) / LOCK_NAME
        self.command = command or " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])
        self.info: dict = {}
        self.taken_over: dict | None = None
        self.taken_over_note = ""
        """Set when a stale lock was taken over: what it was (the build logs it)."""
        self._fd: int | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def read_holder(self) -> dict:
        """The JSON the file holds ({} when empty or unreadable)."""
        try:
            text = self.path.read_text()
            return json.loads(text) if text.strip() else {}
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = self.read_holder()
            raise BuildLockedError(
                f"{self.path.parent} is being built by {describe(holder) if holder else 'another process'}; "
                "wait for it to finish or stop it (a stopped build resumes when run again). "
                "--force does not override a running build."
            ) from None
        previous = {}
        try:
            previous = json.loads(os.pread(fd, 1 << 16, 0).decode() or "{}")
        except ValueError:
            previous = {}
        host = socket.gethostname()
        if previous.get("pid") and not previous.get("released"):
            if previous.get("host") != host:
                age = time.time() - float(previous.get("heartbeat_unix", 0))
                if age < STALE_S:
                    os.close(fd)
                    raise BuildLockedError(
                        f"{self.path.parent} seems to be built by {describe(previous)}, last heartbeat "
                        f"{age:.0f} s ago (this filesystem does not share locks between hosts). Wait "
                        f"for it, or if that build is gone, wait {STALE_S - age:.0f} s or delete {self.path}"
                    )
            self.taken_over = previous
            alive = previous.get("host") == host and _pid_alive(int(previous["pid"]))
            self.taken_over_note = f"took over the lock of {describe(previous)}, which " + (
                "no longer holds it" if alive else "is not running any more"
            )
        self._fd = fd
        self.info = {
            "pid": os.getpid(),
            "host": host,
            "started": _now(),
            "command": self.command,
        }
        self._write()
        self._beat = threading.Thread(target=self._heartbeat, name="mepipe-lock-heartbeat", daemon=True)
        self._beat.start()

    def _write(self, **extra: object) -> None:
        if self._fd is None:
            return
        data = {**self.info, "heartbeat": _now(), "heartbeat_unix": time.time(), **extra}
        raw = (json.dumps(data, indent=1) + "\n").encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, raw, 0)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):  # a full or vanished disk must not kill the build from here
                self._write()

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self._write(released=_now())
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> BuildLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
