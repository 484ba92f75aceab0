"""The command line as a whole: registry names, -q/-v, choices in --help, `mepipe labels`, the build
folder's one name (and the deprecated --shards), `demo --force`, and the CLI layer importing mepipe only
through mepipe.api."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mepipe.cli import app
from tests.toy import write_toy_build

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_build(tmp_path_factory.mktemp("cli") / "b", subjects=2, clips_per_subject=2, size=32)


def test_registry_typos_exit_2_with_the_valid_names_and_write_nothing(tmp_path: Path) -> None:
    r = run("synth", "--out", tmp_path / "s", "--layout", "foo")
    assert r.exit_code == 2 and "casme2" in r.output and "dfew" in r.output and not (tmp_path / "s").exists()
    for bad in ("150:many", "150.5:200"):
        r = run("synth", "--out", tmp_path / "s", "--clip-frames", bad)
        assert r.exit_code == 2 and "MIN:MAX" in r.output and not (tmp_path / "s").exists()
    src = tmp_path / "src"
    src.mkdir()
    cases = [
        (["--set", "dataset.adapter=casme"], ["unknown dataset adapter", "casme2", "samm"]),
        (
            ["--set", "dataset.adapter=composite", "--set", "dataset.options.rule=megc2018"],
            ["unknown composite rule", "megc2019"],
        ),
        (
            ["--set", "dataset.adapter=composite", "--set", "dataset.options.datasets=[{adapter: sam}]"],
            ["dataset.options.datasets[0]", "samm"],
        ),
        (["--set", "face.detector=retinaface"], ["retinaface", "dlib-hog"]),
        (["--backend", "dusk"], ["local", "dask"]),
    ]
    for k, (extra, words) in enumerate(cases):
        out = tmp_path / f"o{k}"
        r = run("build-dataset", "casme2", "--source", src, "--out", out, *extra)
        assert r.exit_code == 2, (extra, r.output)
        assert all(w in r.output for w in words), (extra, r.output)
        assert "Traceback" not in r.output and not out.exists(), extra


def test_label_scheme_typos_exit_2_before_writing(build: Path, tmp_path: Path) -> None:
    r = run("folds", build, "--labels", "casme2_9", "--out", tmp_path / "f.csv")
    assert r.exit_code == 2 and "casme2_5" in r.output and not (tmp_path / "f.csv").exists()
    r = run("export", build, "--format", "npz", "--out", tmp_path / "e", "--labels", "casme2_9")
    assert r.exit_code == 2 and "casme2_5" in r.output and not (tmp_path / "e").exists()
    r = run("labels", "--show", "casme2_9")
    assert r.exit_code == 2 and "casme2_5" in r.output


def test_quiet_and_verbose_on_the_root_command(build: Path) -> None:
    normal = run("verify", build)
    assert normal.exit_code == 0 and "4 clips in" in normal.output
    quiet = run("-q", "verify", build)
    assert quiet.exit_code == 0 and "clips in" not in quiet.output
    folds = run("--quiet", "folds", build)
    assert folds.exit_code == 0 and folds.output.strip() == ""
    assert (build / "folds-loso.csv").is_file()
    verbose = run("-v", "pairs", build, "--delta", "1:2")
    assert verbose.exit_code == 0 and "wrote" in verbose.output and "pairs.csv" in verbose.output


def test_help_lists_the_choices_of_every_command() -> None:
    expect = {
        ("synth",): ["casme2", "dfew", "samm", "smic", "micro", "macro"],
        ("build-dataset",): ["local", "dask", "casme2", "megc2019"],
        ("pairs",): ["frames", "ms"],
        ("folds",): ["loso", "lodo", "casme2_5", "samm_5"],
        ("flow",): ["dis", "farneback", "tvl1", "minmax"],
        ("export",): ["frames", "npz", "ststnet", "keyframes", "casme2_5"],
        ("predict",): ["cuda:N", "auto"],
        ("inspect",): ["--per-page", "--columns"],
        ("demo",): ["--force"],
        ("train", "finetune"): ["loso", "lodo", "miacnet", "--build", "casme2_5"],
        ("train", "pretrain"): ["--build", "train-pretrain"],
    }
    for cmd, words in expect.items():
        r = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "200"})
        assert r.exit_code == 0, cmd
        missing = [w for w in words if w not in r.output]
        assert not missing, (cmd, missing)


def test_labels_lists_schemes_with_classes_and_shows_a_mapping() -> None:
    r = run("labels")
    assert r.exit_code == 0
    line = next(ln for ln in r.output.splitlines() if ln.startswith("casme2_5:"))
    assert "happiness, disgust, repression, surprise, others" in line and "maps casme2" in line
    assert any(ln.startswith("megc2019_3:") and "casme2, samm, smic" in ln for ln in r.output.splitlines())
    r = run("labels", "--show", "casme2_5")
    assert r.exit_code == 0 and "0=happiness" in r.output and "casme2:" in r.output
    assert "  happiness -> happiness" in r.output and "repression -> repression" in r.output


def test_build_folder_is_build_and_shards_still_works_deprecated(build: Path, tmp_path: Path) -> None:
    # a config error stops both before any training; the alias is resolved (and warned about) first
    old = run("train", "finetune", "--shards", build, "--out", tmp_path / "r", "--set", "optim.nope=1")
    assert old.exit_code == 2 and "--shards is deprecated" in old.output and "optim.nope" in old.output
    new = run("train", "finetune", "--build", build, "--out", tmp_path / "r", "--set", "optim.nope=1")
    assert new.exit_code == 2 and "deprecated" not in new.output and "optim.nope" in new.output
    both = run("train", "pretrain", "--build", build, "--shards", build, "--out", tmp_path / "r")
    assert both.exit_code == 2 and "--build only" in both.output
    neither = run("train", "pretrain", "--out", tmp_path / "r")
    assert neither.exit_code == 2 and "missing --build" in neither.output
    assert not (tmp_path / "r").exists()


def test_demo_refuses_an_earlier_demo_without_force_and_foreign_files_with_it(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "results.json").write_text("{}")
    r = run("demo", "--out", out)
    assert r.exit_code == 2 and "--force" in r.output and (out / "results.json").is_file()
    (out / "mine.txt").write_text("keep me")
    r = run("demo", "--out", out, "--force")
    assert r.exit_code == 2 and "mine.txt" in r.output
    assert (out / "mine.txt").read_text() == "keep me" and (out / "results.json").is_file()


def test_verify_exit_codes(build: Path, tmp_path: Path) -> None:
    assert run("verify", build).exit_code == 0
    missing = run("verify", tmp_path / "nothing")
    assert missing.exit_code in (1, 2) and "Traceback" not in missing.output


CLI_LAYER = ("mepipe/cli.py", "mepipe/train/commands.py", "mepipe/clikit.py")
ALLOWED = {"mepipe", "mepipe.api", "mepipe.errors", "mepipe.logs", "mepipe.clikit", "mepipe.train.commands"}


def _mepipe_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mepipe":
            names = [a.name for a in node.names]
            found |= {node.module} if node.module != "mepipe" else {f"mepipe.{n}" for n in names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "mepipe"}
    return found


def test_the_cli_layer_reaches_mepipe_only_through_the_api() -> None:
    for rel in CLI_LAYER:
        used = _mepipe_imports(ROOT / rel)
        # `from mepipe import __version__` is the package itself, not an internal module
        extra = {m for m in used if m not in ALLOWED and m != "mepipe.__version__"}
        assert not extra, f"{rel} imports {sorted(extra)}: call mepipe.api instead"
    assert "mepipe.api" in _mepipe_imports(ROOT / "mepipe/cli.py")


def test_api_is_cheap_to_import_and_names_its_registries() -> None:
    code = (
        "import sys, mepipe.api as a; heavy = [m for m in ('torch', 'cv2', 'h5py', 'numpy', 'pandas') "
        "if m in sys.modules]; print(heavy); print(a.names('build-backends'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["[]", "['local', 'dask']"]
    from mepipe import api

    assert "casme2" in api.names("adapters") and "casme2_5" in api.names("labels")
    from mepipe.errors import ConfigError

    with pytest.raises(ConfigError, match="valid kinds"):
        api.names("nope")


def _commands(group, prefix=()):
    """``(("synth",), command)``, ``(("train", "pretrain"), command)`` ... of the typer app."""
    for name, sub in group.commands.items():
        if hasattr(sub, "commands"):
            yield from _commands(sub, (*prefix, name))
        else:
            yield (*prefix, name), sub


def test_docs_cli_names_every_command_and_option() -> None:
    import typer.main

    text = (ROOT / "docs" / "cli.md").read_text()
    sections = {s.split("`", 1)[0]: s for s in text.split("### `mepipe ")[1:]}
    for path, cmd in _commands(typer.main.get_command(app)):
        name = " ".join(path)
        assert name in sections, f"docs/cli.md has no section for mepipe {name}"
        for p in cmd.params:
            opts = [o for o in getattr(p, "opts", []) if o.startswith("--")]
            if p.param_type_name == "option" and opts:
                assert opts[0] in sections[name], f"docs/cli.md: mepipe {name} does not name {opts[0]}"
    for code in (
        "| 0 |",
        "| 1 |",
        "| 2 |",
        "| 3 |",
        "| 130 |",
        "MEPIPE_RESOURCES",
        "MEPIPE_PROGRESS_INTERVAL",
    ):
        assert code in text
