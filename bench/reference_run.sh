#!/usr/bin/env bash
# Time the public reference hq_demo MSR pipeline on this GPU with a random-weight ADM-256 uncond
# checkpoint built by our code: SR ×4 of an (S/4)² input to an S² output, its inet256 schedule
# (t_T 100, travel L 10, r 3), its own fp16 UNet. Prints REFERENCE_SAMPLING_SECONDS.
#
# Needs wyhuai/DDNM's hq_demo/ copied into an ignored folder (default .ref/hq_demo; never commit
# it) and its extra packages (blobfile, pycryptodomex) as wheels in .ref/whl.
# Usage from the repository root: bash bench/reference_run.sh [S=384] [HQ_DEMO_DIR]
set -euo pipefail
S=${1:-384}
HQ=${2:-.ref/hq_demo}
ROOT=$PWD
WORK=$(mktemp -d)
if compgen -G "$ROOT/.ref/whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" "$ROOT"/.ref/whl/*.whl
fi
PYTHONPATH=$ROOT python3 - "$S" "$WORK" <<'PY'
import sys
import numpy as np
import torch
from PIL import Image
from engine.benchmark import bench_input, build_random_network

size, work = int(sys.argv[1]), sys.argv[2]
net, _ = build_random_network("official", torch.device("cuda:0"))
torch.save({k: v.cpu() for k, v in net.state_dict().items()}, f"{work}/random_uncond.pt")
Image.fromarray((bench_input(size // 4) * 255).round().astype(np.uint8)).save(f"{work}/in.png")
PY
cd "$HQ"
sed -e 's/^class_cond: true/class_cond: false/' -e 's/^classifier_scale: 1.0/classifier_scale: 0.0/' \
    -e "s#^model_path: .*#model_path: $WORK/random_uncond.pt#" -e 's/^show_progress: true/show_progress: false/' \
    confs/inet256.yml > "$WORK/bench.yml"
PYTHONPATH=$WORK/site:$PWD python3 "$ROOT/bench/reference_timed.py" --config "$WORK/bench.yml" \
    --deg sr_averagepooling --scale 4 --resize_y --path_y "$WORK/in.png" --class 0 -i bench \
    > "$WORK/ref.log" 2>&1 || { tail -30 "$WORK/ref.log"; exit 1; }
grep REFERENCE "$WORK/ref.log"
