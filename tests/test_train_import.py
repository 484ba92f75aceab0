"""mepipe.train imports and trains where OpenCV, dlib, decord, typer and rich are missing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

BLOCKED = ("cv2", "dlib", "decord", "typer", "rich", "skimage", "face_alignment")


def test_train_runs_without_optional_packages(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys, warnings
        for name in {BLOCKED!r}:
            sys.modules[name] = None          # any import of these now raises ImportError
        import mepipe, mepipe.train
        from mepipe.train.toy import tiny_config, write_toy_build
        from mepipe.train import finetune_loso, pretrain
        from mepipe.labels import LabelScheme

        root = {str(tmp_path)!r}
        macro = write_toy_build(root + "/macro", subjects=2, clips_per_subject=1, n_frames=8, size=32)
        micro = write_toy_build(root + "/micro", subjects=2, clips_per_subject=2, n_frames=6, size=32)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pre = pretrain(tiny_config("pretrain", macro, root + "/pre", optim__epochs=1, run__pictures=2),
                           log=lambda m: None)
            scheme = LabelScheme("toy", ("happiness", "disgust"),
                                 {{"casme2": {{"happiness": "happiness", "disgust": "disgust"}}}})
            res = finetune_loso(tiny_config("finetune", micro, root + "/ft", optim__epochs=1, run__pictures=2,
                                            init=str(pre.checkpoint)), scheme=scheme, log=lambda m: None)
        assert any("OpenCV" in str(w.message) for w in caught), [str(w.message) for w in caught]
        assert res.metrics["n"] == 3, res.metrics["n"]  # the repression clip is not in the scheme
        assert pre.pictures == []
        loaded = [n for n in {BLOCKED!r} if sys.modules.get(n) is not None]
        assert not loaded, loaded
        print("OK")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]
