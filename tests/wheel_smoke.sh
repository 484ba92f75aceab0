#!/usr/bin/env bash
# Install mepipe from a freshly built wheel (not the checkout) into a new virtual environment and run a
# tiny synth -> build -> verify -> folds -> fine-tune from a folder outside the checkout, so that
# package data (label schemes, fix tables, pipelines, configs, the bundled photograph) is proven to
# ship inside the wheel. Used by .ci/run (`make wheel-test`).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PY:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mepipe-wheel.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

"$PY" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install --quiet --upgrade pip 2>/dev/null || true
"$WORK/venv/bin/pip" wheel --quiet --no-deps --no-build-isolation -w "$WORK/dist" "$REPO" 2>/dev/null \
  || "$WORK/venv/bin/pip" wheel --quiet --no-deps -w "$WORK/dist" "$REPO"
WHEEL="$(ls "$WORK"/dist/mepipe-*.whl)"
"$WORK/venv/bin/pip" install --quiet -c "$REPO/constraints-cpu.txt" "$WHEEL"

cd "$WORK"  # outside the checkout: nothing can come from the source tree
M="$WORK/venv/bin/mepipe"
"$WORK/venv/bin/python" - <<'PY'
import mepipe, pathlib
p = pathlib.Path(mepipe.__file__).resolve()
assert "site-packages" in p.parts, f"mepipe imported from {p}, not from the installed wheel"
from mepipe import resources
from mepipe.labels import load_scheme
assert "casme2_5" in resources.names("labels") and "demo-micro" in resources.names("pipelines")
assert load_scheme("casme2_5").classes[0] == "happiness"
print("wheel install ok:", p.parent)
PY
"$M" --version
"$M" synth --layout casme2 --out data --subjects 2 --clips-per-subject 2 --seed 0
"$M" build-dataset demo-micro --source data --out shards --set align.crop_size=64 --workers 1
"$M" verify shards
"$M" folds shards --protocol loso --labels casme2_5 --out folds.csv
"$M" train finetune --build shards --labels casme2_5 --out run --epochs 1 --device cpu \
  --set model.input_size=64 --set run.pictures=0
test -s run/metrics.json
echo "wheel smoke test passed"
