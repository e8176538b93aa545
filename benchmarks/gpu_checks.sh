#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one go (what a lent GPU machine runs):
# the `gpu`-marked tests, the GPU throughput benchmark, and a real
# train-density run at 512 px with AMP through the CLI. Each part's output is
# kept in $OUT (default outputs/gpu_checks); a part that fails does not stop
# the others.   Usage: bash benchmarks/gpu_checks.sh
set -u
OUT=${OUT:-outputs/gpu_checks}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)" \
  | tee -a "$OUT/gpu.txt"

echo "== benchmark"
$PY benchmarks/bench_gpu.py 2>&1 | tee "$OUT/bench_gpu.txt"

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
