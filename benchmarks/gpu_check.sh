#!/usr/bin/env bash
# The GPU path in one short script (about 3-5 minutes on one H200), run from the repository root:
#
#   bash benchmarks/gpu_check.sh [RESULTS_DIR]        (default: $OUT if set, else gpu-check/)
#
# 1. benchmarks/train_throughput.py --device cuda with bf16 autocast, channels-last and torch.compile:
#    pairs/s from shards (a synthetic build it writes itself) next to the on-device ceiling (the same
#    model on synthetic uint8 tensors already on the GPU), in the same run; then the same without
#    torch.compile (eager) for the compile gain.
# 2. DDP smoke with NCCL: mepipe.train.ddp's collectives (all_reduce_sum from a CPU-side call, barrier,
#    sync_buffers) and 2 DistributedDataParallel steps under torchrun, checking every rank ends with
#    the same weights; one process per GPU (NCCL refuses two ranks on one GPU), so on a 1-GPU machine
#    the group has one rank.
# 3. `mepipe train pretrain` under torchrun on cuda, 1 epoch of 2 steps on a toy build (real NCCL DDP
#    when the machine has 2+ GPUs).
#
# Needs python3 with CUDA torch, h5py, pandas, pyyaml, opencv and mepipe's pure-Python dependencies
# (pydantic, typer, rich). The project's GPU machines lack pydantic: carry it as wheels in .whl/ (made
# on the development machine with `pip download --no-deps --only-binary=:all: --python-version 3.12
# --platform manylinux2014_x86_64 -d .whl pydantic pydantic-core annotated-types typing-inspection`);
# this script installs .whl/*.whl into /tmp/site when pydantic is missing.
set -euo pipefail
RES=${1:-${OUT:-gpu-check}}
PY=${PYTHON:-python3}
mkdir -p "$RES"
WORK=$(mktemp -d)
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if ! $PY -c "import pydantic" 2>/dev/null; then
    if ls .whl/*.whl >/dev/null 2>&1; then
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site:$PYTHONPATH
    else
        echo "pydantic is not installed and there is no .whl/ to install it from (see the header)" >&2
        exit 2
    fi
fi
$PY - <<'EOF' | tee "$RES/env.txt"
import torch
assert torch.cuda.is_available(), "no CUDA device visible to torch"
print("torch", torch.__version__, "cuda", torch.version.cuda, "nccl", torch.cuda.nccl.version(),
      "|", torch.cuda.device_count(), "x", torch.cuda.get_device_name(0))
EOF
NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
NP=$(( NGPU >= 2 ? 2 : 1 ))

echo "== 1. throughput on cuda: bf16 + channels-last + torch.compile (defaults on cuda)"
timeout 240 $PY benchmarks/train_throughput.py --device cuda --size 224 --input-size 112 --clips 96 \
    --frames 40 --batch 256 --pairs 4096 --steps 30 --workers 8 --workdir "$WORK/tp" | tee "$RES/throughput.txt"
echo "== 1b. the same, eager (no torch.compile)"
rm -rf "$WORK/tp"
timeout 120 $PY benchmarks/train_throughput.py --device cuda --size 224 --input-size 112 --clips 96 \
    --frames 40 --batch 256 --pairs 4096 --steps 20 --workers 8 --no-compile --workdir "$WORK/tp" \
    | tee "$RES/throughput-eager.txt"

echo "== 2. NCCL DDP smoke, $NP process(es)"
cat > "$WORK/nccl_smoke.py" <<'EOF'
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F

from mepipe.train.config import ModelConfig
from mepipe.train.ddp import all_reduce_sum, barrier, cleanup, init_distributed, sync_buffers
from mepipe.train.models import build_model

world = int(os.environ["WORLD_SIZE"])
local = int(os.environ["LOCAL_RANK"])
if world > 1:
    info = init_distributed(device="cuda")
else:  # one GPU: a one-rank NCCL group still runs every collective through NCCL
    torch.cuda.set_device(local)
    dist.init_process_group("nccl", rank=0, world_size=1)
assert dist.get_backend() == "nccl", dist.get_backend()
dev = torch.device("cuda", local)
rank = dist.get_rank()
torch.manual_seed(0)
net = build_model(ModelConfig(input_size=64, width=8), 5).to(dev).to(memory_format=torch.channels_last)
ddp = torch.nn.parallel.DistributedDataParallel(net, device_ids=[local])
opt = torch.optim.AdamW(ddp.parameters(), lr=1e-3)
torch.manual_seed(100 + rank)  # different data on each rank
for step in range(2):
    x, y = torch.randn(8, 2, 3, 64, 64, device=dev), torch.randint(0, 5, (8,), device=dev)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = F.cross_entropy(ddp(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
sync_buffers(ddp)
total = all_reduce_sum([1.0, float(loss)], torch.device("cpu"))  # a CPU-side call under NCCL
barrier()
flat = torch.cat([p.detach().float().flatten() for p in net.parameters()])
gathered = [torch.zeros_like(flat) for _ in range(world)]
dist.all_gather(gathered, flat)
same = all(torch.equal(gathered[0], g) for g in gathered)
if rank == 0:
    print(f"NCCL smoke: world {world}, 2 DDP steps, ranks counted {total[0]:.0f}, identical weights: {same}")
assert same and total[0] == world
cleanup()
EOF
timeout 120 $PY -m torch.distributed.run --standalone --nproc_per_node "$NP" "$WORK/nccl_smoke.py" \
    2>&1 | tee "$RES/ddp.txt"

echo "== 3. mepipe train pretrain under torchrun, $NP process(es), cuda, 2 steps"
$PY - "$WORK/macro" <<'EOF'
import sys

from tests.toy import write_toy_build

write_toy_build(sys.argv[1], subjects=2, clips_per_subject=3, n_frames=10, size=64, dataset="toymacro",
                expression_type="macro", amplitude=60)
EOF
BATCH=$(( 12 / NP ))  # 6 clips x 4 pairs = 24 pairs = 2 steps of 12 pairs over all ranks
timeout 180 $PY -m torch.distributed.run --standalone --nproc_per_node "$NP" -m mepipe train pretrain \
    --shards "$WORK/macro" --out "$WORK/pre" --epochs 1 --device cuda \
    --set model.input_size=64 --set model.width=8 --set data.pairs_per_clip=4 \
    --set data.batch_size=$BATCH --set run.pictures=0 2>&1 | tee -a "$RES/ddp.txt"
$PY - "$WORK/pre" <<'EOF' | tee -a "$RES/ddp.txt"
import json
import sys
from pathlib import Path

run = Path(sys.argv[1])
hist = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
assert (run / "last.pt").is_file() and len(hist) == 1, "pretrain under torchrun wrote no checkpoint/history"
print(f"pretrain under torchrun: {hist[0]['pairs']} pairs in 1 epoch, loss {hist[0]['loss']:.4f}, "
      f"{hist[0]['pairs_per_s']} pairs/s -> {run / 'last.pt'}")
EOF
rm -rf "$WORK"
echo "gpu check done -> $RES"
