"""What every ``mepipe`` command shares: the one error-to-exit-code wrapper, choices for ``--help``,
the deprecated ``--shards`` alias, and the logger that results are reported on.

Exit codes (``docs/cli.md``): 0 ok; 1 the data does not match (verification failure, unfinished or
damaged build, rejected clip); 2 usage or configuration error (bad option, unknown name, invalid
config, refused overwrite); 3 ``verify`` only: consistent but unfinished build; 130 interrupted.
No traceback for any of them. Imports only the standard library, typer and mepipe's errors and logs,
so ``mepipe --help`` stays fast.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

import typer

from mepipe.errors import ConfigError, MepipeError
from mepipe.logs import get_logger

log = get_logger("mepipe.cli")
"""Results and notes of the commands go here (shown unless ``-q``; tables and CSV go to stdout)."""

EXIT_OK, EXIT_DATA, EXIT_USAGE, EXIT_INCOMPLETE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def error(message: str) -> None:
    """Report an error line on stderr (shown even with ``-q``)."""
    typer.echo(f"error: {message}", err=True)


def handled(fn):
    """Run a command: :class:`ConfigError` (and a build folder locked by a running build) exits 2, any
    other :class:`MepipeError` exits 1, Ctrl-C exits 130, each with a one-paragraph message and no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            error(str(exc))
            raise typer.Exit(EXIT_USAGE) from None
        except MepipeError as exc:
            from mepipe import api

            error(str(exc))
            # another build holds the output folder: a refusal, like an existing output without --force
            raise typer.Exit(EXIT_USAGE if isinstance(exc, api.BuildLockedError) else EXIT_DATA) from None
        except KeyboardInterrupt:
            error("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


def choices(names: list[str] | tuple[str, ...]) -> Any:
    """``Literal[...]`` of ``names``: typer lists them in ``--help`` and refuses others (exit 2)."""
    return Literal[tuple(names)]  # type: ignore[valid-type]


def verbosity(verbose: int, quiet: bool) -> None:
    """A command's own ``-v``/``-q`` (kept where they existed): re-applied over the root's."""
    if verbose or quiet:
        from mepipe.logs import setup_logging

        setup_logging(-1 if quiet else verbose)


def build_folder(build: Path | None, shards: Path | None) -> Path:
    """``--build`` (or its deprecated alias ``--shards``, which still works and says so)."""
    if build is not None and shards is not None:
        raise ConfigError("give --build only (--shards is its deprecated old name)")
    if shards is not None:
        log.warning("--shards is deprecated: use --build (the same build folder)")
        return shards
    if build is None:
        raise ConfigError("missing --build BUILD: the build folder (the --out of `mepipe build-dataset`)")
    return build


BUILD_ARG_HELP = "build folder (the --out of `mepipe build-dataset`)"
