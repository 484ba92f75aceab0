"""``read_manifest_frame``: the manifest as a pandas DataFrame with ids kept as text and the
spreadsheet neutralisation undone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mepipe.records import ManifestRow
from mepipe.shards import read_manifest, read_manifest_frame, write_manifest


def test_samm_ids_stay_text_and_neutralised_cells_read_back(tmp_path: Path):
    rows = [
        ManifestRow(
            key="samm/006/006_1_2", dataset="samm", subject="006", clip_id="006_1_2", status="ok",
            shard="shard-00000.h5", n_frames=12, onset=5562, apex=5588, offset=5632, fps=200.0,
            emotion_raw='=HYPERLINK("http://evil.example","x")', aus_raw="+12", face_score=1.25,
        ),
        ManifestRow(
            key="samm/011/011_2_1", dataset="samm", subject="011", clip_id="011_2_1", status="failed",
            reason="no_face", message="-no face found", emotion_raw="'quoted",
        ),
    ]  # fmt: skip
    write_manifest(rows, tmp_path)
    plain = pd.read_csv(tmp_path / "manifest.csv")
    assert plain["subject"].tolist() == [6, 11]  # what the reader is for
    assert plain["emotion_raw"][0].startswith("'=")
    df = read_manifest_frame(tmp_path)
    assert list(df.columns) == ManifestRow.columns() and len(df) == 2
    assert df["subject"].tolist() == ["006", "011"] and df["clip_id"][0] == "006_1_2"
    assert df["emotion_raw"].tolist() == ['=HYPERLINK("http://evil.example","x")', "'quoted"]
    assert df["aus_raw"][0] == "+12" and df["message"][1] == "-no face found"
    assert df["shard"][1] == "" and df["reason"][0] == ""  # empty text is "", not NaN
    assert df["onset"].dtype == "int64" and df["onset"].tolist() == [5562, -1]
    assert df["fps"].dtype == "float64" and df["face_score"][0] == 1.25
    assert df.to_dict("records") == [r.__dict__ for r in read_manifest(tmp_path)]
    assert read_manifest_frame(tmp_path / "manifest.csv").equals(df)  # the file itself works too
