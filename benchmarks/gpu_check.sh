#!/usr/bin/env bash
# The GPU check, ready to run on a machine with a CUDA GPU (about 3-5 minutes on one GPU):
#   1. the test suite's CUDA-marked tests (tests/test_cuda.py: bfloat16 autocast, channels_last, torch.compile,
#      CPU/GPU agreement);
#   2. benchmarks/speed.py --device cuda --compile on generated data (model alone in float32 and mixed precision,
#      our pipeline with and without torch.compile, the reference pipeline, prediction);
#   3. a 1-GPU torchrun run of `aimonk train` (the nccl/DDP code path starts with --nproc_per_node > 1).
# Run from anywhere: bash benchmarks/gpu_check.sh   (PYTHON picks the interpreter; DATA a labelled folder)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
WORK=${WORK:-$(mktemp -d)}
DATA=${DATA:-$WORK/demo}
export AIMONK_CACHE=${AIMONK_CACHE:-$WORK/cache}

"$PYTHON" - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA GPU: this check needs one"
print(f"torch {torch.__version__}, {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, "
      f"bf16 {torch.cuda.is_bf16_supported()}")
PY

echo "== 1. CUDA-marked tests"
"$PYTHON" -m pytest -q -m cuda tests

[ -f "$DATA/labels.txt" ] || "$PYTHON" -m aimonk demo --out "$DATA" --count 1000 --size 224 >/dev/null

echo "== 2. speed, CUDA (bf16 autocast, channels_last, torch.compile)"
"$PYTHON" benchmarks/speed.py --data "$DATA" --device cuda --limit 0 --epochs 2 --compile

echo "== 3. torchrun, 1 GPU"
started=$(date +%s)
"$PYTHON" -m torch.distributed.run --standalone --nproc_per_node 1 -m aimonk train "$DATA" --out "$WORK/run" \
    --preset finetune --epochs 3 --device cuda
echo "torchrun run: $(( $(date +%s) - started )) s; outputs in $WORK/run"
