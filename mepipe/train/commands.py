"""The ``mepipe train`` commands (``pretrain``, ``finetune``): thin wrappers over :mod:`mepipe.api`.

Conventions: the choices of ``--protocol`` and ``--model`` (and the label schemes, devices and bundled
configs) are listed in ``--help``; ``--force`` replaces an existing run folder, ``--resume`` continues
it (without either an existing run is refused); exit code 0 ok, 1 data problem (unfinished build,
shards that do not match the manifest), 2 usage or configuration error, never a traceback for either.
The configuration is complete and valid before anything is written. The build folder is `--build`
(`--shards`, its old name, still works and says it is deprecated).
"""

from __future__ import annotations

from pathlib import Path

import typer

from mepipe import api
from mepipe.clikit import build_folder, choices, handled, log, verbosity

train_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="MA2MI pre-training on macro shards; leak-free LOSO fine-tuning of MIACNet (exit codes: 0 ok, "
    "1 data problem, 2 usage or config error).",
)

train_errors = handled
"""The one error wrapper of every command (:func:`mepipe.clikit.handled`; kept under its old name)."""

ProtocolName = choices(["loso", "lodo", "all"])
ModelName = choices(api.names("models"))
DEVICE_HELP = "auto (CUDA when available), cpu, cuda or cuda:N"


def _train_config(kind: str, config: str | None, set_: list[str], flags: dict[str, object], verbose: int):
    """Logging, then the validated config: ``--config`` (file or bundled name), ``--set``, then the
    explicit flags that were given (flags win)."""
    verbosity(max(verbose, 0), verbose < 0)
    over = api.parse_overrides(set_)
    over.update({k: v for k, v in flags.items() if v is not None})
    return api.train_config(kind, config=config, overrides=over)  # type: ignore[arg-type]


def _run_flags(build, shards, out, epochs, device, seed, resume, force) -> dict[str, object]:
    """The config keys of the options both train commands have (``None``: not given)."""
    return {
        "data.shards": str(build_folder(build, shards)),
        "run.out": str(out),
        "optim.epochs": epochs,
        "run.device": device,
        "run.seed": seed,
        "run.resume": True if resume else None,
        "run.force": True if force else None,
    }


CONFIG_HELP = f"training YAML, or the name of a bundled one: {', '.join(api.names('configs'))}"
SET_HELP = "override a config key: KEY=VALUE (repeatable; YAML values), e.g. optim.lr=1e-3 (docs/training.md)"
FORCE_HELP = "DANGER: delete the existing run in --out and start again"
VERBOSE_HELP = "-v: debug lines on the console too; -q: warnings only (RUN/train.log always has everything)"
BUILD_HELP = "build folder (the --out of `mepipe build-dataset`)"
SHARDS_HELP = "deprecated old name of --build (still works)"


@train_app.command("pretrain")
@handled
def train_pretrain(
    build: Path | None = typer.Option(None, "--build", help=f"{BUILD_HELP} of macro-expression clips"),
    shards: Path | None = typer.Option(None, "--shards", help=SHARDS_HELP),
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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="same as mepipe -q"),
) -> None:
    """MA2MI pre-training: from I_t and a bottlenecked action code, predict I_t+delta (by default the motion
    that warps I_t into it; ma2mi.target / ma2mi.pixel_goal choose the latent, the frame or the change).

    Multi-GPU: torchrun --nproc_per_node N -m mepipe train pretrain ...
    """
    flags = _run_flags(build, shards, out, epochs, device, seed, resume, force)
    flags["data.delta"] = delta
    cfg = _train_config("pretrain", config, set_, flags, -1 if quiet else verbose)
    res = api.pretrain(cfg)
    log.info("final loss %.4f; checkpoint %s (use with finetune --init)", res.final_loss, res.checkpoint)


@train_app.command("finetune")
@handled
def train_finetune(
    build: Path | None = typer.Option(None, "--build", help=f"{BUILD_HELP} of micro-expression clips"),
    shards: Path | None = typer.Option(None, "--shards", help=SHARDS_HELP),
    out: Path = typer.Option(
        ...,
        "--out",
        help="run folder: metrics.json, predictions.csv, history, curves, folds/ (all: model.pt)",
    ),
    labels: str | None = typer.Option(
        None, "--labels", help=f"label scheme: {', '.join(api.names('labels'))} (`mepipe labels`)"
    ),
    protocol: ProtocolName | None = typer.Option(  # type: ignore[valid-type]
        None,
        "--protocol",
        help="loso (default): leave one subject out; lodo: one dataset out; all: one model on every "
        "subject (fixed budget, no test side) written to RUN/model.pt for use",
    ),
    model: ModelName | None = typer.Option(None, "--model", help="registered model (default miacnet)"),  # type: ignore[valid-type]
    init: Path | None = typer.Option(
        None,
        "--init",
        help="MA2MI checkpoint (pretrain RUN/last.pt) or a labelled MIACNet (RUN/model.pt); default: scratch",
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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="same as mepipe -q"),
) -> None:
    """Fine-tune per fold (LOSO/LODO) and score the pooled predictions; --protocol all: one model for use."""
    flags = _run_flags(build, shards, out, epochs, device, seed, resume, force)
    flags.update({
        "data.labels": labels,
        "protocol.name": protocol,
        "model.name": model,
        "init": str(init) if init else None,
        "protocol.val_subjects": val_subjects,
    })  # fmt: skip
    cfg = _train_config("finetune", config, set_, flags, -1 if quiet else verbose)
    res = api.finetune(cfg)
    if cfg.protocol.name == "all":
        log.info(
            "trained on all %d clips (%d classes) -> %s (no held-out side: report the LOSO numbers of the "
            "same config)", res.n_clips, len(res.classes), res.model,
        )  # fmt: skip
        return
    m = res.metrics
    log.info(
        "acc %.4f  UF1 %.4f  UAR %.4f  (%d clips, %d folds) -> %s",
        m["acc"], m["uf1"], m["uar"], m["n"], m["n_folds"], res.out / "metrics.json",
    )  # fmt: skip
    for name, d in sorted(m["per_dataset"].items()):
        log.info("  %s: acc %.4f  UF1 %.4f  UAR %.4f  (%d clips)", name, d["acc"], d["uf1"], d["uar"], d["n"])
