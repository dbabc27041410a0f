#!/usr/bin/env bash
# The GPU checks of issue 14 in one script (≤ 7 minutes on one GPU):
#   1. the static-engine parity tests, the CUDA-graph one included (tests/test_static_engine.py)
#   2. `plume-lite bench` at Qwen2-VL-2B shapes (random weights, bf16): direct, eager latent
#      and graph latent, interleaved, batch 1/16/64, with the parity check, JSON out
#   3. the training-step benchmark: latent K=8 and direct under the gpu-2b recipe (LoRA r=16,
#      vision frozen, bf16) on random 2B-shaped weights, 448x448 images of SynthMMEB tiny,
#      batch 32 then 64 unless 32 runs out of memory: pairs/s and peak GPU memory, JSON out
#
#   bash benchmarks/gpu_check.sh               # on a CUDA machine; JSON in benchmarks/results/
#   bash benchmarks/gpu_check.sh --cpu-smoke   # the same steps on the CPU, tiny shapes, < 1 min
#
# PYTHON (default: .venv/bin/python if present, else python) and OUT_DIR can be set.
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
[[ "${1:-}" == "--cpu-smoke" ]] && SMOKE=1
PY="${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python)}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
START=$SECONDS

if [[ $SMOKE == 1 ]]; then
    OUT_DIR="${OUT_DIR:-$(mktemp -d)}"  # smoke results are not benchmark results: kept out of the tree
    export PLUME_THREADS="${PLUME_THREADS:-1}"
    BENCH=(--shape tiny --device cpu --batch-sizes 1,2 --repeats 1 --steps 8)
    TRAIN=(--shape tiny --device cpu --batches 2 --steps 1 --set lora=true --set freeze_vision=true)
    TESTS=(-k "mixed_batch and 8-mrope or unknown_engine or cuda")
else
    OUT_DIR="${OUT_DIR:-benchmarks/results}"
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: use --cpu-smoke')"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    BENCH=(--shape 2b --device cuda --batch-sizes 1,16,64 --repeats 5 --steps 8 --engine graph)
    TRAIN=(--shape 2b --device cuda --batches 32,64 --steps 3)
    TESTS=()
fi
mkdir -p "$OUT_DIR"

echo "== 1. parity tests"
"$PY" -m pytest -q tests/test_static_engine.py ${TESTS[@]+"${TESTS[@]}"} -p no:cacheprovider

echo "== 2. encode benchmark"
BENCH_JSON="$OUT_DIR/bench-$([[ $SMOKE == 1 ]] && echo cpu-smoke || echo gpu-2b)-$STAMP.json"
timeout 330 "$PY" -m plume_lite bench "${BENCH[@]}" --out "$BENCH_JSON"

echo "== 3. training-step benchmark"
DATA="$OUT_DIR/synthmmeb-tiny-img"
"$PY" -m plume_lite synth --out "$DATA" --size tiny --tasks img_cls_colorshape,img_qa_leftof >/dev/null
TRAIN_JSON="$OUT_DIR/train-bench-$([[ $SMOKE == 1 ]] && echo cpu-smoke || echo gpu-2b)-$STAMP.json"
timeout 180 "$PY" -m plume_lite.experiments.train_bench --data "$DATA" --variants latent,direct --k 8 \
    "${TRAIN[@]}" --out "$TRAIN_JSON"
rm -rf "$DATA"
echo "done in $((SECONDS - START)) s; results in $OUT_DIR"
