#!/usr/bin/env bash
# The GPU measurements of docs/benchmarks.md, in parts that each fit one 10-minute run.
# Usage from the repository root on a CUDA machine:  bash bench/gpu_session.sh PART [OUT_DIR]
#   tests      GPU-only tests (CUDA graphs, bf16, no host sync, compiled network on CUDA)   ~1 min
#   graphs     1024² SR×4 at 100 steps and with travel L10 r3, ours vs the reference-like
#              baseline (2 windows, extrapolated), per-batch latency                           ~8 min
#   compiled   the same jobs with --compile (cold kernel cache), then the 384² job warm        ~9 min
#   reference  the public hq_demo on its 384² job (bench/reference_run.sh), then ours on it     ~3 min
#   upscalers  the fast upscale (ResShift ×4, one 256-px tile) beside the engine's ×4 at Fast
#              and Balanced, per output megapixel (random weights of the official networks)     ~2 min
set -u
PART=${1:?part: tests | graphs | compiled | reference | upscalers}
OUT=${2:-bench-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/restorer-compile-cache}
bench() { python3 -m engine bench "$@" 2>&1 | grep -v -i warn; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
case "$PART" in
tests)
    timeout 300 python3 -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | tail -5 ;;
graphs)
    timeout 560 bench --size 1024 --batch 16 --latency 1,2,4,8,16 --profile --baseline-windows 2 --json "$OUT/bench1024.json" ;;
compiled)
    timeout 420 bench --size 1024 --batch 16 --latency 1,2,4,8,16 --profile --compile --skip-baseline --json "$OUT/bench1024_compiled.json"
    timeout 150 bench --size 384 --batch 16 --compile --skip-baseline --unet-iters 4 --json "$OUT/bench384_compiled.json" ;;
reference)
    timeout 200 bash bench/reference_run.sh 384
    timeout 100 bench --size 384 --batch 16 --skip-baseline --unet-iters 4 --json "$OUT/bench384.json"
    timeout 200 bench --size 384 --batch 16 --compile --skip-baseline --unet-iters 4 --json "$OUT/bench384_compiled.json" ;;
upscalers)
    timeout 300 bench --upscalers --device cuda --upscale-input 256 --measure-balanced ;;
*)
    echo "unknown part $PART"; exit 2 ;;
esac
