"""Face backends: detectors and 68-point landmarkers behind two small interfaces, each in one registry.

Registered here (all offline): detectors ``dlib-hog`` (the default), ``dlib-cnn``, ``yunet``
(``mepipe[yunet]``); landmarkers ``dlib-68`` (the default) and ``fan`` (``mepipe[fan]``, local weights).
Backends are built lazily, once per process and option set (a worker loads the 100 MB predictor once,
not once per clip). ``face.options`` in the pipeline is one mapping; each backend takes the keys it
declares (:attr:`Backend.options_allowed`).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from mepipe.errors import ConfigError
from mepipe.face.backends import dlib_backends, fan, yunet  # noqa: F401  (registers the backends)
from mepipe.face.backends.base import (
    DETECTORS,
    LANDMARKERS,
    Backend,
    BackendInfo,
    Box,
    FaceDetector,
    Landmarker,
    dlib_model_path,
)
from mepipe.provenance import cached_file_sha256

__all__ = [
    "DETECTORS",
    "LANDMARKERS",
    "BackendInfo",
    "Box",
    "FaceDetector",
    "Landmarker",
    "backend_options",
    "backend_table",
    "check_face_backends",
    "dlib_model_path",
    "get_detector",
    "get_landmarker",
    "list_backends",
]


def backend_options(cls: type[Backend], options: dict[str, Any] | None) -> dict[str, Any]:
    """The part of ``face.options`` that backend ``cls`` takes."""
    return {k: v for k, v in (options or {}).items() if k in cls.options_allowed}


def check_face_backends(detector: str, landmarker: str, options: dict[str, Any]) -> None:
    """Validate backend names and options at config parse time (raises :class:`ConfigError`).

    Unknown names list the registered ones; an option neither backend takes, or a bad value (a FAN
    weights file that does not exist), is named with the fix. Nothing is built.
    """
    det, lmk = DETECTORS.get(detector), LANDMARKERS.get(landmarker)
    unknown = sorted(set(options) - set(det.options_allowed) - set(lmk.options_allowed))
    if unknown:
        allowed = sorted({*det.options_allowed, *lmk.options_allowed}) or ["none"]
        raise ConfigError(
            f"face.options: {unknown} is taken by neither {detector} nor {landmarker} "
            f"(they take: {', '.join(allowed)})"
        )
    det.check_options(backend_options(det, options))
    lmk.check_options(backend_options(lmk, options))


def _frozen(options: dict[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((options or {}).items()))


def get_detector(name: str, upsample: int = 0, options: dict[str, Any] | None = None) -> FaceDetector:
    """The process-wide instance of detector ``name`` (built on first use)."""
    cls = DETECTORS.get(name)
    return _detector(name, int(upsample), _frozen(backend_options(cls, options)))


@cache
def _detector(name: str, upsample: int, options: tuple[tuple[str, Any], ...]) -> FaceDetector:
    return DETECTORS.get(name)(upsample=upsample, **dict(options))


def get_landmarker(name: str, options: dict[str, Any] | None = None) -> Landmarker:
    """The process-wide instance of landmarker ``name`` (built on first use)."""
    cls = LANDMARKERS.get(name)
    return _landmarker(name, _frozen(backend_options(cls, options)))


@cache
def _landmarker(name: str, options: tuple[tuple[str, Any], ...]) -> Landmarker:
    return LANDMARKERS.get(name)(**dict(options))


def list_backends(options: dict[str, Any] | None = None) -> list[BackendInfo]:
    """Every registered detector and landmarker: usable here or not (and why), model file, sha256,
    licence. ``options`` (``face.options``) are used to locate model files (the FAN weights)."""
    out = []
    for kind, reg in (("detector", DETECTORS), ("landmarker", LANDMARKERS)):
        for name in reg.names():
            cls = reg.get(name)
            opts = backend_options(cls, options)
            usable, why = cls.availability(opts)
            path = cls.model_path(opts)
            exists = path is not None and path.is_file()
            out.append(
                BackendInfo(
                    kind=kind,
                    name=name,
                    usable=usable,
                    why=why,
                    model_file=str(path) if path is not None else "",
                    sha256=cached_file_sha256(str(path)) if exists else "",
                    licence=cls.licence,
                    score=getattr(cls, "score_kind", ""),
                )
            )
    return out


def backend_table(options: dict[str, Any] | None = None) -> str:
    """:func:`list_backends` as plain text, one block per backend (``mepipe backends``)."""
    lines = []
    for b in list_backends(options):
        state = "usable" if b.usable else "NOT usable"
        lines.append(f"{b.kind} {b.name}: {state}" + (f" ({b.why})" if b.why else ""))
        if b.model_file:
            lines.append(f"  model file: {b.model_file}")
            lines.append(f"  sha256:     {b.sha256 or '(file missing)'}")
        else:
            lines.append("  model file: none")
        if b.score:
            lines.append(f"  score:      {b.score}")
        lines.append(f"  licence:    {b.licence}")
    return "\n".join(lines)


def require_usable(kind: str, name: str, options: dict[str, Any] | None = None) -> None:
    """Raise :class:`ConfigError` saying how to make backend ``name`` usable, if it is not."""
    reg = DETECTORS if kind == "detector" else LANDMARKERS
    cls = reg.get(name)
    ok, why = cls.availability(backend_options(cls, options))
    if not ok:
        raise ConfigError(f"face.{kind} {name} cannot run here: {why}")
