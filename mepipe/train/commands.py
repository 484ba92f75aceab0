"""The ``mepipe train`` commands (``pretrain``, ``finetune``): thin wrappers over :mod:`mepipe.train`.

Conventions: the choices of ``--protocol`` and ``--model`` (and the label schemes, devices and bundled
configs) are listed in ``--help``; ``--force`` replaces an existing run folder, ``--resume`` continues
it (without either an existing run is refused); exit code 0 ok, 1 data problem (unfinished build,
shards that do not match the manifest), 2 usage or configuration error, never a traceback for either.
The configuration is complete and valid before anything is written.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import typer
from rich.console import Console

from mepipe.errors import ConfigError, MepipeError
from mepipe.schema import parse_set

console = Console(stderr=True, soft_wrap=True)

train_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="MA2MI pre-training on macro shards; leak-free LOSO fine-tuning of MIACNet (exit codes: 0 ok, "
    "1 data problem, 2 usage or config error).",
)


def _choices(names: list[str]) -> object:
    """``Literal[...]`` of ``names`` (typer shows the choices in --help and rejects others, exit 2)."""
    return Literal[tuple(names)]  # type: ignore[valid-type]


def _model_names() -> list[str]:
    from mepipe.train.models import MODELS  # no torch: the registry imports networks when building

    return MODELS.names()


def _scheme_names() -> str:
    from mepipe.labels import available_schemes

    return ", ".join(available_schemes())


ProtocolName = _choices(["loso", "lodo", "all"])
ModelName = _choices(_model_names())
DEVICE_HELP = "auto (CUDA when available), cpu, cuda or cuda:N"


def train_errors(fn):
    """Train commands: configuration errors exit 2, data problems (build, shards) exit 1, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None
        except MepipeError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper


def _train_config(kind: str, config: str | None, set_: list[str], flags: dict[str, object], verbose: int):
    """Logging, then the validated config: ``--config`` (file or bundled name), ``--set``, then the
    explicit flags that were given (flags win)."""
    from mepipe.logs import setup_logging
    from mepipe.train.config import load_train_config

    setup_logging(verbose)
    over = parse_set(set_)
    over.update({k: v for k, v in flags.items() if v is not None})
    return load_train_config(kind, config, over)  # type: ignore[arg-type]


def _config_names() -> str:
    from mepipe import resources

    return ", ".join(resources.names("configs"))


CONFIG_HELP = f"training YAML, or the name of a bundled one: {_config_names()}"
SET_HELP = "override a config key: KEY=VALUE (repeatable; YAML values), e.g. optim.lr=1e-3 (docs/training.md)"
FORCE_HELP = "DANGER: delete the existing run in --out and start again"
VERBOSE_HELP = "-v: debug lines on the console too; -q: warnings only (RUN/train.log always has everything)"


@train_app.command("pretrain")
@train_errors
def train_pretrain(
    shards: Path = typer.Option(
        ..., "--shards", help="build folder of macro-expression clips (build-dataset --out)"
    ),
    out: Path = typer.Option(
        ..., "--out", help="run folder: config, log, last.pt, history, curves, pictures"
    ),
    delta: str | None = typer.Option(None, "--delta", help="frame offset range A:B (inclusive), e.g. 1:4"),
    config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    epochs: int | None = typer.Option(None, "--epochs", min=1),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    seed: int | None = typer.Option(None, "--seed", min=0),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out from RUN/last.pt"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help=VERBOSE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="warnings and errors only on the console"),
) -> None:
    """MA2MI pre-training: reconstruct the latent of I_t+delta from I_t and a bottlenecked action code.

    Multi-GPU: torchrun --nproc_per_node N -m mepipe train pretrain ...
    """
    flags = {
        "data.shards": str(shards),
        "run.out": str(out),
        "data.delta": delta,
        "optim.epochs": epochs,
        "run.device": device,
        "run.seed": seed,
        "run.resume": True if resume else None,
        "run.force": True if force else None,
    }
    cfg = _train_config("pretrain", config, set_, flags, -1 if quiet else verbose)
    from mepipe.train.pretrain import pretrain

    res = pretrain(cfg)
    console.print(f"final loss {res.final_loss:.4f}; checkpoint {res.checkpoint} (use with finetune --init)")


@train_app.command("finetune")
@train_errors
def train_finetune(
    shards: Path = typer.Option(..., "--shards", help="build folder of micro-expression clips"),
    out: Path = typer.Option(
        ...,
        "--out",
        help="run folder: metrics.json, predictions.csv, history, curves, folds/ (all: model.pt)",
    ),
    labels: str | None = typer.Option(None, "--labels", help=f"label scheme: {_scheme_names()}"),
    protocol: ProtocolName | None = typer.Option(  # type: ignore[valid-type]
        None,
        "--protocol",
        help="loso (default): leave one subject out; lodo: one dataset out; all: one model on every "
        "subject (fixed budget, no test side) written to RUN/model.pt for use",
    ),
    model: ModelName | None = typer.Option(None, "--model", help="registered model (default miacnet)"),  # type: ignore[valid-type]
    init: Path | None = typer.Option(
        None, "--init", help="MA2MI checkpoint (pretrain RUN/last.pt); default: scratch"
    ),
    config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="fixed epoch budget per fold"),
    val_subjects: int | None = typer.Option(
        None, "--val-subjects", min=0, help="training subjects carved out per fold to pick the epoch"
    ),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    seed: int | None = typer.Option(None, "--seed", min=0),
    resume: bool = typer.Option(False, "--resume", help="skip finished folds, resume the current one"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help=VERBOSE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="warnings and errors only on the console"),
) -> None:
    """Fine-tune per fold (LOSO/LODO) and score the pooled predictions; --protocol all: one model for use."""
    flags = {
        "data.shards": str(shards),
        "run.out": str(out),
        "data.labels": labels,
        "protocol.name": protocol,
        "model.name": model,
        "init": str(init) if init else None,
        "optim.epochs": epochs,
        "protocol.val_subjects": val_subjects,
        "run.device": device,
        "run.seed": seed,
        "run.resume": True if resume else None,
        "run.force": True if force else None,
    }
    cfg = _train_config("finetune", config, set_, flags, -1 if quiet else verbose)
    from mepipe.train.loso import finetune_all, finetune_loso

    if cfg.protocol.name == "all":
        done = finetune_all(cfg)
        console.print(
            f"trained on all {done.n_clips} clips ({len(done.classes)} classes) -> {done.model} "
            "(no held-out side: report the LOSO numbers of the same config)"
        )
        return
    res = finetune_loso(cfg)
    m = res.metrics
    console.print(
        f"acc {m['acc']:.4f}  UF1 {m['uf1']:.4f}  UAR {m['uar']:.4f}  ({m['n']} clips, "
        f"{m['n_folds']} folds) -> {res.out / 'metrics.json'}"
    )
    for name, d in sorted(m["per_dataset"].items()):
        console.print(
            f"  {name}: acc {d['acc']:.4f}  UF1 {d['uf1']:.4f}  UAR {d['uar']:.4f}  ({d['n']} clips)"
        )
