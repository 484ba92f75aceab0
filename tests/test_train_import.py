"""mepipe.train imports and trains where OpenCV, dlib, decord, typer and rich are missing; its config and
model registry import without torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.toy import write_toy_build

BLOCKED = ("cv2", "dlib", "decord", "typer", "rich", "skimage", "face_alignment")
ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=str(ROOT)
    )


def test_train_runs_without_optional_packages(tmp_path: Path) -> None:
    # the builds are test scaffolding, written here (the build's row mapping needs OpenCV)
    macro = write_toy_build(tmp_path / "macro", subjects=2, clips_per_subject=1, n_frames=8, size=32)
    micro = write_toy_build(tmp_path / "micro", subjects=2, clips_per_subject=2, n_frames=6, size=32)
    code = textwrap.dedent(f"""
        import sys, warnings
        for name in {BLOCKED!r}:
            sys.modules[name] = None          # any import of these now raises ImportError
        import mepipe, mepipe.train
        from mepipe.train import config_from_dict, finetune_loso, pretrain
        from mepipe.labels import LabelScheme

        tiny = {{"model.input_size": 32, "model.width": 4, "model.pos_heads": 2, "data.batch_size": 4,
                "data.pairs_per_clip": 4, "optim.epochs": 1, "run.pictures": 2, "run.device": "cpu",
                "run.cpu_threads": 1}}
        root = {str(tmp_path)!r}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pre = pretrain(config_from_dict("pretrain", overrides={{**tiny, "ma2mi.pixel_size": 8,
                           "data.shards": {str(macro)!r}, "run.out": root + "/pre"}}))
            scheme = LabelScheme("toy", ("happiness", "disgust"),
                                 {{"casme2": {{"happiness": "happiness", "disgust": "disgust"}}}})
            res = finetune_loso(config_from_dict("finetune", overrides={{**tiny, "data.shards": {str(micro)!r},
                                "run.out": root + "/ft", "init": str(pre.checkpoint)}}), scheme=scheme)
        assert any("OpenCV" in str(w.message) for w in caught), [str(w.message) for w in caught]
        assert res.metrics["n"] == 3, res.metrics["n"]  # the repression clip is not in the scheme
        assert pre.pictures == []
        loaded = [n for n in {BLOCKED!r} if sys.modules.get(n) is not None]
        assert not loaded, loaded
        print("OK")
    """)
    out = _run(code)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_config_and_model_names_need_no_torch() -> None:
    code = textwrap.dedent("""
        import sys
        from mepipe.train.config import config_from_dict
        from mepipe.train.models import MODELS
        cfg = config_from_dict("finetune", overrides={"model.name": "resnet-diff", "optim.lr": "1e-3"})
        assert cfg.model.name in MODELS and cfg.optim.lr == 1e-3
        assert "torch" not in sys.modules, "importing the config or the registry loaded torch"
        print("OK")
    """)
    out = _run(code)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]
