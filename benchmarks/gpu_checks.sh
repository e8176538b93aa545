#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one go (what a lent GPU machine runs):
# the `gpu`-marked tests, the GPU throughput benchmark at 512 px and at 1024x512
# (training with AMP and channels_last, data loading alone from the cache, the
# GPU kept >= 90 % busy by 16 loader workers), a real train-density run at 512 px
# with AMP through the CLI, and `predict` throughput on CUDA. Each part's output
# is kept in $OUT (default outputs/gpu_checks); a part that fails does not stop
# the others. The figures go to the README's Scale section.
# Usage: bash benchmarks/gpu_checks.sh   (QUICK=1: fewer entries and passes, ~5 min)
set -u
OUT=${OUT:-outputs/gpu_checks}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)" \
  | tee -a "$OUT/gpu.txt"

ENTRIES=${ENTRIES:-2048}; PASSES=${PASSES:-3}
[ "${QUICK:-0}" = 1 ] && { ENTRIES=768; PASSES=2; }

echo "== benchmark, 512 px"
$PY benchmarks/bench_gpu.py --entries "$ENTRIES" --epochs "$PASSES" 2>&1 \
  | tee "$OUT/bench_gpu.txt"

echo "== benchmark, 1024x512 (AMP, channels_last; loader alone; GPU busy at 16 workers)"
$PY benchmarks/bench_gpu.py --img-size 1024x512 --batch 32 --sweep 8,16 --busy-workers 16 \
  --entries "$ENTRIES" --epochs "$PASSES" 2>&1 | tee "$OUT/bench_gpu_1024x512.txt"

echo "== gpu tests"
$PY -m pytest -m gpu -q -p no:cacheprovider tests/engine/test_gpu.py 2>&1 \
  | tail -30 | tee "$OUT/pytest_gpu.txt"

echo "== train-density on CUDA, efficientnet_b0 at 512 px, AMP"
tmp=$(mktemp -d)
export MAMMOGRAPHY_CACHE_DIR=$tmp/cache
$PY -m mammography synth --out "$tmp/data" --exams 120 --size 768x640 > /dev/null
$PY -m mammography train-density --csv "$tmp/data/classificacao.csv" --img-size 512 \
  --epochs 4 --batch-size 64 --device cuda --amp --no-pretrained --outdir "$tmp/runs" \
  > "$OUT/train_512.log" 2>&1
echo "train-density exit code $?"
tail -25 "$OUT/train_512.log"
cp "$tmp/runs/results_1/train_history.csv" "$OUT/history_512.csv" 2>/dev/null
cp "$tmp/runs/results_1/summary.json" "$OUT/summary_512.json" 2>/dev/null
cat "$OUT/history_512.csv" 2>/dev/null

echo "== predict on CUDA: throughput of the trained run over new images"
$PY -m mammography synth --out "$tmp/new" --exams 150 --size 768x640 --seed 9 > /dev/null
start=$(date +%s.%N)
$PY -m mammography predict --run "$tmp/runs/results_1" --csv "$tmp/new/classificacao.csv" \
  --device cuda --batch-size 64 --outdir "$tmp/predict" > "$OUT/predict.log" 2>&1
code=$?
end=$(date +%s.%N)
images=$(($(wc -l < "$tmp/predict/results_1/predictions_image.csv" 2>/dev/null || echo 1) - 1))
secs=$($PY -c "print(round($end - $start, 1))")
echo "predict exit code $code: $images images in $secs s (whole command:" \
  "start-up, cache build, scoring, tables)" | tee "$OUT/predict.txt"
$PY - "$tmp/new" "$tmp/predict/results_1" <<'PY' 2>&1 | tee -a "$OUT/predict.txt"
import json, sys
from pathlib import Path
# Scoring alone, from the cache the command above built: the summary's own timing.
summary = json.loads((Path(sys.argv[2]) / "summary.json").read_text())
print("predict summary results:", json.dumps(summary.get("results", {}))[:600])
print("predict duration_seconds:", summary.get("execution", {}).get("duration_seconds"))
PY
tail -15 "$OUT/predict.log"
