"""The statistics of benchmarks/transfer_experiment.py (exact Wilcoxon and sign tests, t interval) and
its summary over finished seeds (result files as the experiment writes them)."""

import argparse
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

_bench = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(_bench))  # the script imports the sign-flip test from baselines.py
_spec = importlib.util.spec_from_file_location("transfer_experiment", _bench / "transfer_experiment.py")
tx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tx)


def test_wilcoxon_exact_p_matches_hand_counts():
    # all 5 differences positive: only the all-+ and all-- assignments are as extreme -> 2/32
    assert tx.wilcoxon_signed_rank_p([0.1, 0.2, 0.3, 0.4, 0.5]) == pytest.approx(2 / 32)
    # ranks 1..4, W+ = 1 + 2 + 3 = 6 (the largest is negative): |W+ - 5| = 1; 14 of 16 assignments
    # are at least that far from the centre (only W+ = 5, reached twice, is closer)
    assert tx.wilcoxon_signed_rank_p([0.1, 0.2, 0.3, -0.4]) == pytest.approx(14 / 16)
    assert tx.wilcoxon_signed_rank_p([0.0, 0.0]) == 1.0  # zeros dropped
    # ties share the average rank: |d| = 0.2, 0.2 -> ranks 1.5, 1.5
    assert tx.wilcoxon_signed_rank_p([0.2, -0.2]) == 1.0


def test_sign_test_is_the_binomial_tail():
    assert tx.sign_test_p([1, 1, 1, 1, 1, 1, 1, 1]) == pytest.approx(2 / 256)
    assert tx.sign_test_p([1, 1, 1, 1, 1, 1, 1, -1]) == pytest.approx(2 * 9 / 256)
    assert tx.sign_test_p([1, -1, 0]) == 1.0


def test_t_interval_uses_the_student_quantile():
    m, lo, hi = tx.t_interval([1.0, 2.0, 3.0])
    half = 4.303 * 1.0 / math.sqrt(3)
    assert m == 2.0 and lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)


def test_summary_pairs_each_seed_and_skips_unfinished_ones(tmp_path):
    variants = ["scratch", "ma2mi", "no-position"]
    for seed, (s, m, n) in {0: (0.5, 0.6, 0.55), 1: (0.6, 0.65, 0.6), 2: (0.4, 0.5, 0.45)}.items():
        res = {
            v: {"uf1": x, "uar": x, "acc": x, "n": 4, "correct": {}}
            for v, x in zip(variants, (s, m, n), strict=True)
        }
        d = tmp_path / f"seed{seed}"
        d.mkdir()
        secs = {"data": 1.0, "pretrain": 2.0, **{v: 1.0 for v in variants}}
        (d / "result.json").write_text(json.dumps({"seed": seed, "seconds": secs, "results": res}))
    (tmp_path / "seed3").mkdir()  # started, nothing finished
    (tmp_path / "seed3" / "result.json").write_text(json.dumps({"seconds": {"data": 1.0}, "results": {}}))
    args = argparse.Namespace(
        seeds=[0, 1, 2, 3],
        out=tmp_path,
        variants=variants,
        threads=1,
        pretrain_set=["ma2mi.pixel_size=56"],
        finetune_repeats=1,
        micro_shards=None,
    )
    summary = tx.summarise(args, tx.DemoSizes())
    assert summary["seeds"] == [0, 1, 2] and summary["pretrain_set"] == {"ma2mi.pixel_size": 56}
    p = summary["paired"]["ma2mi - scratch"]
    assert p["diffs"] == pytest.approx([0.1, 0.05, 0.1]) and p["wins"] == 3 and p["losses"] == 0
    assert summary["paired"]["ma2mi - no-position"]["mean"] == pytest.approx(0.05)
    assert summary["seconds_per_seed"]["mean"] == pytest.approx(6.0)
    tx.plots(args, summary)
    assert (tmp_path / "transfer.png").stat().st_size > 1000


def test_a_seed_made_with_other_pretraining_settings_is_not_mixed_in(tmp_path):
    """Resuming into a seed folder whose result.json records other ``--pretrain-set`` values stops before
    anything is built or trained (its numbers would be mixed with the new settings')."""
    (tmp_path / "result.json").write_text(json.dumps({"seconds": {}, "results": {}, "pretrain_set": {}}))
    with pytest.raises(SystemExit, match="use a fresh --out"):
        tx.seed_task(tmp_path, 0, tx.DemoSizes(), ["ma2mi"], 1, {}, "varied", {"ma2mi.pixel_goal": "change"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]
    # a record from before --pretrain-set existed was made with the defaults: not mixed with other settings
    (tmp_path / "result.json").write_text(json.dumps({"seconds": {}, "results": {}}))
    with pytest.raises(SystemExit, match="use a fresh --out"):
        tx.seed_task(tmp_path, 0, tx.DemoSizes(), ["ma2mi"], 1, {}, "varied", {"ma2mi.pixel_goal": "change"})


@pytest.mark.parametrize(("size", "was"), [("macro_subjects", 6), ("micro_clips", 8)])
def test_a_seed_made_with_another_data_set_size_is_not_mixed_in(tmp_path, size, was):
    small = tx.DemoSizes(workers=1)
    rec = {"seconds": {}, "results": {}, "pretrain_set": {}, "sizes": small.__dict__}
    (tmp_path / "result.json").write_text(json.dumps(rec))
    with pytest.raises(SystemExit, match=rf"other sizes.*'{size}': \({was}, 12\).*use a fresh --out"):
        tx.seed_task(tmp_path, 0, tx.DemoSizes(**{size: 12}), ["ma2mi"], 1, {}, "varied", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_a_seed_made_with_other_macro_clip_lengths_is_not_mixed_in(tmp_path):
    """``--macro-frames`` is part of a seed's sizes: the same lengths pass (the record holds a list, the
    sizes a tuple), other lengths or the layout's default are refused."""
    short = tx.DemoSizes(workers=1, macro_frames=(16, 24))
    rec = {"seconds": {}, "results": {}, "pretrain_set": {}, "sizes": dict(short.__dict__),
           "pretrain_objective": tx.pretrain_objective({})}  # fmt: skip
    (tmp_path / "result.json").write_text(json.dumps(rec))
    tx._check_record(tmp_path, {}, short)
    for other, shown in (((16, 32), r"\(\[16, 24\], \[16, 32\]\)"), (None, r"\(\[16, 24\], None\)")):
        with pytest.raises(SystemExit, match=rf"other sizes.*'macro_frames': {shown}"):
            tx._check_record(tmp_path, {}, tx.DemoSizes(workers=1, macro_frames=other))
    del rec["sizes"]["macro_frames"]  # a record from before --macro-frames: the layout's clips
    (tmp_path / "result.json").write_text(json.dumps(rec))
    tx._check_record(tmp_path, {}, tx.DemoSizes(workers=1))
    with pytest.raises(SystemExit, match=r"'macro_frames': \(None, \[16, 24\]\)"):
        tx._check_record(tmp_path, {}, short)


@pytest.mark.parametrize(
    "args, named, why",
    [
        (["--pretrain-set", "ma2mi.pixel_goal=flow"], "--pretrain-set", "ma2mi.pixel_goal"),
        (["--macro-frames", "6:24"], "--macro-frames", "8 <= min <= max"),  # too short for the generator
        (
            ["--micro-subjects", "1"],
            "--micro-subjects",
            "must be at least 2, got 1",
        ),  # no LOSO with one subject
        (["--macro-clips", "0"], "--macro-clips", "must be at least 1, got 0"),
    ],
)
def test_a_bad_setting_stops_before_any_task(tmp_path, args, named, why):
    import subprocess

    run = subprocess.run(
        [sys.executable, str(_bench / "transfer_experiment.py"), "--out", str(tmp_path / "x"), "--seeds", "0", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2 and named in run.stderr and why in run.stderr
    assert not (tmp_path / "x").exists()


def test_learning_curve_joins_scratch_the_main_run_and_the_budget_runs(tmp_path):
    hist = [{"epoch": e, "loss": 1.0 / e, "pairs": 100, "pairs_per_s": 1.0} for e in (1, 2, 3)]
    for seed, (s, m, b) in {0: (0.5, 0.6, 0.55), 1: (0.6, 0.7, 0.62)}.items():
        d = tmp_path / f"seed{seed}"
        d.mkdir()
        res = {"scratch": {"uf1": s}, "ma2mi": {"uf1": m}}
        (d / "result.json").write_text(json.dumps({"results": res, "pretrain_history": hist}))
        budget = {"result": {"uf1": b}, "pairs_seen": 200, "final_loss": 0.7}
        (d / "budget-2.json").write_text(json.dumps(budget))
    (tmp_path / "seed2").mkdir()  # no budget run yet: left out of the curve
    (tmp_path / "seed2" / "result.json").write_text(json.dumps({"results": {"scratch": {"uf1": 0.1}}}))
    args = argparse.Namespace(out=tmp_path, budgets=[2], budget_seeds=[0, 1, 2], pretrain_epochs=3)
    summary: dict = {}
    tx.summarise_budgets(args, summary)
    rows = summary["learning_curve"]["rows"]
    assert summary["learning_curve"]["seeds"] == [0, 1] and list(rows) == ["0", "2", "3"]
    assert rows["0"]["pairs_seen"] == 0 and rows["2"]["pairs_seen"] == 200 and rows["3"]["pairs_seen"] == 300
    assert rows["2"]["minus_scratch"] == pytest.approx(0.035) and rows["3"]["mean"] == pytest.approx(0.65)
    assert rows["3"]["final_loss"] == pytest.approx(1 / 3)
    assert rows["3"]["paired"]["diffs"] == pytest.approx([0.1, 0.1]) and rows["3"]["paired"]["wins"] == 2
    tx.plots(argparse.Namespace(out=tmp_path), summary)
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000


def test_a_pretrain_setting_the_experiment_sets_itself_is_refused(tmp_path):
    """``data.delta`` with a δ sweep (each sweep run sets its own δ) or ``optim.epochs`` (use
    --pretrain-epochs) would silently change what the tables report: refused before any task."""
    import subprocess

    for extra in (
        ["--deltas", "1:2", "--pretrain-set", "data.delta=1:8"],
        ["--pretrain-set", "optim.epochs=3"],
    ):
        run = subprocess.run(
            [sys.executable, str(_bench / "transfer_experiment.py"), "--out", str(tmp_path / "x"), "--seeds", "0",
             *extra],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        key = extra[-1].split("=")[0]
        assert run.returncode == 2 and f"{key} is set by the run's own arguments" in run.stderr, run.stderr
        assert not (tmp_path / "x").exists()


def _metrics(uf1: float) -> dict:
    return {"uf1": uf1, "uar": uf1, "acc": uf1, "n": 4, "correct": {}}


def test_finetune_repeats_run_with_their_own_seeds_and_resume(tmp_path, monkeypatch):
    """``--finetune-repeats 3``: every variant once, then the repeats, with run.seed N + 1000 r in
    ``runs/{v}-ft{r}``; a rerun with more repeats trains only the missing ones."""
    calls = []

    def fake_finetune(run_dir, micro, seed, sizes, variant, init, **kw):  # the LOSO run is tested elsewhere
        calls.append((run_dir.name, seed, variant))
        return argparse.Namespace(uf1=seed / 10_000, uar=0.5, acc=0.5, predictions=[])

    monkeypatch.setattr(tx, "finetune_run", fake_finetune)
    monkeypatch.setattr(tx, "_ensure_data", lambda out, *a: (out / "macro-shards", out / "micro-shards"))
    sizes = tx.DemoSizes(workers=1)
    tx.seed_task(tmp_path, 7, sizes, ["scratch", "no-position-scratch"], 1, {}, "varied", {}, repeats=2)
    assert calls == [("scratch", 7, "scratch"), ("no-position-scratch", 7, "no-position-scratch"),
                     ("scratch-ft1", 1007, "scratch"), ("no-position-scratch-ft1", 1007, "no-position-scratch")]  # fmt: skip
    calls.clear()
    tx.seed_task(tmp_path, 7, sizes, ["scratch", "no-position-scratch"], 1, {}, "varied", {}, repeats=3)
    assert calls == [
        ("scratch-ft2", 2007, "scratch"),
        ("no-position-scratch-ft2", 2007, "no-position-scratch"),
    ]
    rec = json.loads((tmp_path / "result.json").read_text())
    assert rec["results"]["scratch"]["uf1"] == pytest.approx(0.0007)
    assert {r: m["uf1"] for r, m in rec["repeats"]["scratch"].items()} == pytest.approx(
        {"1": 0.1007, "2": 0.2007}
    )
    assert set(rec["seconds"]) >= {"scratch", "scratch-ft1", "scratch-ft2", "no-position-scratch-ft2"}


def test_summary_with_repeats_pairs_the_per_seed_means(tmp_path):
    """With K repeats a seed's UF1 is the mean of its K fine-tuning runs; a seed missing one repeat is
    left out; the within-seed spread is reported."""
    per_seed = {0: ((0.5, 0.7), (0.6, 0.9)), 1: ((0.6, 0.6), (0.7, 0.7)), 2: ((0.4, 0.6), (0.5, 0.8))}
    for seed, ((s0, s1), (m0, m1)) in per_seed.items():
        d = tmp_path / f"seed{seed}"
        d.mkdir()
        rec = {"seed": seed, "seconds": {"data": 1.0, "pretrain": 2.0, "scratch": 3.0, "ma2mi": 3.0,
                                          "scratch-ft1": 3.0, "ma2mi-ft1": 3.0},
               "results": {"scratch": _metrics(s0), "ma2mi": _metrics(m0)},
               "repeats": {"scratch": {"1": _metrics(s1)}, "ma2mi": {"1": _metrics(m1)}}}  # fmt: skip
        if seed == 2:
            del rec["repeats"]["ma2mi"]  # repeat 1 of ma2mi not finished
        (d / "result.json").write_text(json.dumps(rec))
    args = argparse.Namespace(
        seeds=[0, 1, 2], out=tmp_path, variants=["scratch", "ma2mi"], threads=1, pretrain_set=[],
        finetune_repeats=2, micro_shards=None,
    )  # fmt: skip
    summary = tx.summarise(args, tx.DemoSizes())
    assert summary["seeds"] == [0, 1] and summary["finetune_repeats"] == 2
    assert summary["variants"]["scratch"]["uf1"] == pytest.approx([0.6, 0.6])
    assert summary["paired"]["ma2mi - scratch"]["diffs"] == pytest.approx([0.15, 0.1])
    # sd over the two runs: seed 0 scratch 0.1414, seed 1 0 -> mean 0.0707
    assert summary["variants"]["scratch"]["finetune_sd"] == pytest.approx(math.sqrt(0.02) / 2)
    assert summary["seconds_per_seed"]["each"] == [15.0, 15.0]
    args.finetune_repeats = 1  # the same records read as single runs: every seed, repeat 0 only
    assert tx.summarise(args, tx.DemoSizes())["paired"]["ma2mi - scratch"]["diffs"] == pytest.approx(
        [0.1, 0.1, 0.1]
    )


def test_finetune_budgets_run_each_variant_at_their_epochs_and_pair_per_budget(tmp_path, monkeypatch):
    """``--finetune-budgets 10``: every variant once more at 10 epochs in ``runs/{v}-ft-e10`` (the main
    budget is not run again); the summary pairs each budget against scratch at the same budget."""
    calls = []

    def fake_finetune(run_dir, micro, seed, sizes, variant, init, **kw):
        calls.append((run_dir.name, sizes.finetune_epochs))
        uf1 = {("scratch", 10): 0.4, ("ma2mi", 10): 0.5, ("scratch", 40): 0.7, ("ma2mi", 40): 0.6}
        return argparse.Namespace(uf1=uf1[variant, sizes.finetune_epochs] + seed / 100, uar=0.5, acc=0.5,
                                  predictions=[])  # fmt: skip

    monkeypatch.setattr(tx, "finetune_run", fake_finetune)
    monkeypatch.setattr(tx, "_ensure_data", lambda out, *a: (out / "macro-shards", out / "micro-shards"))
    monkeypatch.setattr(tx, "FROM_SCRATCH", ("scratch", "ma2mi"))  # no pre-training in this test
    sizes = tx.DemoSizes(workers=1)
    for seed in (0, 1):
        (tmp_path / f"seed{seed}").mkdir()
        tx.seed_task(tmp_path / f"seed{seed}", seed, sizes, ["scratch", "ma2mi"], 1, {}, "varied", {},
                     finetune_budgets=(10, 40))  # fmt: skip
    assert calls[:4] == [("scratch", 40), ("ma2mi", 40), ("scratch-ft-e10", 10), ("ma2mi-ft-e10", 10)]
    assert len(calls) == 8
    args = argparse.Namespace(
        seeds=[0, 1], out=tmp_path, variants=["scratch", "ma2mi"], finetune_budgets=[10]
    )
    summary: dict = {}
    tx.summarise_finetune_budgets(args, summary, sizes)
    rows = summary["finetune_budgets"]["rows"]
    assert rows["10"]["paired"]["ma2mi"]["diffs"] == pytest.approx([0.1, 0.1])
    assert rows["40"]["paired"]["ma2mi"]["diffs"] == pytest.approx([-0.1, -0.1])
    assert rows["10"]["uf1"]["scratch"] == pytest.approx([0.4, 0.41])


def test_given_builds_are_linked_read_only_and_not_mixed_with_others(tmp_path, monkeypatch):
    """``--macro-shards/--micro-shards``: every seed folder links the given builds (nothing is synthesised
    or copied), the record names them, and a seed folder made with other builds is refused."""
    builds = {}
    for kind in ("macro", "micro"):
        builds[kind] = tmp_path / f"build-{kind}"
        builds[kind].mkdir()
        (builds[kind] / "manifest.csv").write_text("clip\n")
    shards = {k: str(d) for k, d in builds.items()}
    seen = []
    monkeypatch.setattr(tx, "prepare_data", lambda *a, **k: pytest.fail("synthesised despite given builds"))
    monkeypatch.setattr(tx, "pretrain_run", lambda run_dir, macro, *a, **k: seen.append(("pre", macro.resolve())) or (None, []))  # fmt: skip
    monkeypatch.setattr(tx, "finetune_run", lambda run_dir, micro, *a, **k: seen.append(("ft", micro.resolve()))
                        or argparse.Namespace(uf1=0.5, uar=0.5, acc=0.5, predictions=[]))  # fmt: skip
    seed_dir = tmp_path / "out" / "seed3"
    seed_dir.mkdir(parents=True)
    tx.seed_task(seed_dir, 3, tx.DemoSizes(workers=1), ["ma2mi"], 1, {}, "canonical", {}, shards=shards)
    assert seen == [("pre", builds["macro"]), ("ft", builds["micro"])]
    assert (seed_dir / "micro-shards").is_symlink() and (seed_dir / "micro-shards" / "manifest.csv").is_file()
    assert json.loads((seed_dir / "result.json").read_text())["shards"] == shards
    assert sorted(p.name for p in builds["micro"].iterdir()) == ["manifest.csv"]  # nothing written there
    with pytest.raises(SystemExit, match="made with shards"):
        tx.seed_task(seed_dir, 3, tx.DemoSizes(workers=1), ["ma2mi"], 1, {}, "canonical", {},
                     shards={**shards, "micro": str(tmp_path)})  # fmt: skip
    with pytest.raises(SystemExit, match="made with shards"):  # nor with the seed's synthetic sets
        tx.seed_task(seed_dir, 3, tx.DemoSizes(workers=1), ["ma2mi"], 1, {}, "canonical", {})
    left = tmp_path / "out" / "seed4"  # a synthetic build left by a run killed before its record
    (left / "macro-shards").mkdir(parents=True)
    with pytest.raises(SystemExit, match="macro-shards exists and is not a link to"):
        tx.seed_task(left, 4, tx.DemoSizes(workers=1), ["ma2mi"], 1, {}, "canonical", {}, shards=shards)
    assert not (left / "macro-shards").is_symlink() and not list((left / "macro-shards").iterdir())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--macro-shards", "{build}"], "--macro-shards and --micro-shards go together"),
        (["--macro-shards", "{build}", "--micro-shards", "{tmp}"], "not a build folder (no manifest.csv)"),
        (
            ["--macro-shards", "{build}", "--micro-shards", "{build}", "--expressions", "varied"],
            "--expressions shape",
        ),
        (
            ["--macro-shards", "{build}", "--micro-shards", "{build}", "--micro-clips", "12"],
            "--micro-clips shape",
        ),
    ],
)
def test_bad_given_builds_stop_before_any_task(tmp_path, extra, message):
    import subprocess

    build = tmp_path / "build"
    build.mkdir()
    (build / "manifest.csv").write_text("clip\n")
    args = [a.format(build=build, tmp=tmp_path) for a in extra]
    run = subprocess.run(
        [sys.executable, str(_bench / "transfer_experiment.py"), "--out", str(tmp_path / "x"), "--seeds", "0", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2 and message in run.stderr, run.stderr
    assert not (tmp_path / "x").exists()


def test_a_seed_made_under_other_pretraining_defaults_is_not_mixed_in(tmp_path):
    """Each seed records the resolved pre-training objective; a folder made by an older mepipe (none
    recorded) or under other bundled defaults is refused even with the same ``--pretrain-set``."""
    sizes = tx.DemoSizes(workers=1)
    rec = {"seconds": {}, "results": {}, "pretrain_set": {}, "sizes": sizes.__dict__}
    (tmp_path / "result.json").write_text(json.dumps(rec))
    with pytest.raises(
        SystemExit, match="another pre-training objective.*an older mepipe.*use a fresh --out"
    ):
        tx._check_record(tmp_path, {}, sizes)
    objective = tx.pretrain_objective({})
    assert objective["ma2mi"]["pixel_goal"] == "motion" and objective["delta"] == list(tx.DEFAULT_DELTA)
    (tmp_path / "result.json").write_text(json.dumps({**rec, "pretrain_objective": objective}))
    tx._check_record(tmp_path, {}, sizes)  # the same defaults: resumes
    old = {**objective, "ma2mi": {**objective["ma2mi"], "pixel_goal": "frame"}}
    (tmp_path / "result.json").write_text(json.dumps({**rec, "pretrain_objective": old}))
    with pytest.raises(SystemExit, match="another pre-training objective"):
        tx._check_record(tmp_path, {}, sizes)


def test_the_supervised_control_trains_on_macro_labels_once_and_initialises_from_its_model(
    tmp_path, monkeypatch
):
    """``supervised``: one labelled training on the seed's macro build (no MA2MI pre-training when no
    variant needs it), its ``model.pt`` initialises the variant's fine-tuning; a rerun reuses it."""
    calls = []
    monkeypatch.setattr(tx, "_ensure_data", lambda out, *a: (out / "macro-shards", out / "micro-shards"))
    monkeypatch.setattr(tx, "pretrain_run", lambda *a, **k: pytest.fail("MA2MI pre-training not needed"))
    monkeypatch.setattr(tx, "supervised_run", lambda run_dir, macro, seed, sizes, **k: calls.append(("sup", run_dir.name, macro.name, seed)))  # fmt: skip
    monkeypatch.setattr(tx, "finetune_run", lambda run_dir, micro, seed, sizes, v, init, **k: calls.append(
        (run_dir.name, v, Path(init).relative_to(tmp_path).as_posix())) or argparse.Namespace(uf1=0.5, uar=0.5, acc=0.5, predictions=[]))  # fmt: skip
    sizes = tx.DemoSizes(workers=1)
    for _ in range(2):
        tx.seed_task(tmp_path, 3, sizes, ["scratch", "supervised"], 1, {}, "varied", {})
    assert calls == [
        ("sup", "supervised-pretrain", "macro-shards", 3),
        ("scratch", "scratch", "runs/pretrain/last.pt"),  # ignored by finetune_run for a scratch variant
        ("supervised", "supervised", "runs/supervised-pretrain/model.pt"),
    ]
    assert "supervised_pretrain" in json.loads((tmp_path / "result.json").read_text())["seconds"]
