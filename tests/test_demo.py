"""`mepipe demo` end to end at a tiny size: every stage runs and leaves its artefacts."""

import json

from typer.testing import CliRunner

from mepipe.cli import app
from mepipe.demo import DemoSizes, run_demo


def test_demo_runs_every_stage_and_writes_results(tmp_path):
    sizes = DemoSizes(
        micro_subjects=2,
        micro_clips=4,
        macro_subjects=2,
        macro_clips=2,
        pretrain_epochs=1,
        finetune_epochs=1,
        workers=1,
    )
    lines: list[str] = []
    res = run_demo(tmp_path / "demo", seed=1, sizes=sizes, log=lines.append)
    assert set(res.metrics) == {"scratch", "ma2mi", "no-position"}
    for m in res.metrics.values():
        assert 0.0 <= m["uf1"] <= 1.0 and 0.0 <= m["uar"] <= 1.0 and m["n"] > 0
    out = tmp_path / "demo"
    saved = json.loads((out / "results.json").read_text())
    assert saved["metrics"] == res.metrics and saved["seed"] == 1
    assert (out / "micro-contact-sheet.png").is_file()
    assert (out / "runs" / "pretrain" / "last.pt").is_file()
    assert list((out / "runs" / "pretrain" / "pictures").glob("reconstructions-*.png"))
    assert (out / "runs" / "ma2mi" / "pictures" / "heatmaps.png").is_file()
    assert (out / "runs" / "ma2mi" / "train.resolved.yaml").read_text().count("last.pt") == 1  # init recorded
    assert any("verified" in line for line in lines)
    assert "UF1" in res.table() and "no-position" in res.table()


def test_demo_cli_refuses_bad_workers():
    res = CliRunner().invoke(app, ["demo", "--workers", "0"])
    assert res.exit_code != 0 and "workers" in res.output
