#!/usr/bin/env bash
# Seeds 42-44 plus a 3-fold cross-validation, run in parallel into one outdir.
#
#   scripts/sweep.sh                                  # the synthetic demo data
#   CSV=data/site_b/classificacao.csv DICOM_ROOT=data/site_b/archive IMG_SIZE=256 \
#       OUTDIR=outputs/sweep_b scripts/sweep.sh --arch efficientnet_b0 --epochs 20
#
# Extra arguments go to every train-density call. Each job gets its own
# results_N (allocated atomically), so nothing collides; the cache is built
# once first so the jobs do not all decode the same images.
set -euo pipefail

CSV=${CSV:-data/synthetic/classificacao.csv}
DICOM_ROOT=${DICOM_ROOT:-data/synthetic/archive}
OUTDIR=${OUTDIR:-outputs/sweep}
IMG_SIZE=${IMG_SIZE:-128}
CONFIG=${CONFIG:-configs/demo.yaml}
# The CLI: $MAMMOGRAPHY, else `mammography` on PATH (an activated .venv), else this
# checkout's .venv/bin/mammography (made by `make install`).
if [[ -z "${MAMMOGRAPHY:-}" ]]; then
    repo=$(cd "$(dirname "$0")/.." && pwd)
    if command -v mammography > /dev/null; then
        MAMMOGRAPHY=mammography
    elif [[ -x "$repo/.venv/bin/mammography" ]]; then
        MAMMOGRAPHY="$repo/.venv/bin/mammography"
    else
        echo "scripts/sweep.sh: no mammography command. Run 'make install' (and" \
             "'source .venv/bin/activate'), or set MAMMOGRAPHY=/path/to/mammography." >&2
        exit 2
    fi
fi
JOB_THREADS=${JOB_THREADS:-1}  # torch threads per job: parallel jobs share the cores

common=(--config "$CONFIG" --csv "$CSV" --dicom-root "$DICOM_ROOT" --outdir "$OUTDIR"
        --img-size "$IMG_SIZE" --num-workers 0 "$@")

# Same image settings as the jobs, so they all find their images cached.
"$MAMMOGRAPHY" data cache --csv "$CSV" --dicom-root "$DICOM_ROOT" --img-size "$IMG_SIZE"

pids=()
for seed in 42 43 44; do
    OMP_NUM_THREADS=$JOB_THREADS "$MAMMOGRAPHY" train-density "${common[@]}" --seed "$seed" \
        > /dev/null 2>&1 &
    pids+=($!)
done
OMP_NUM_THREADS=$JOB_THREADS "$MAMMOGRAPHY" train-density "${common[@]}" --cv-folds 3 \
    > /dev/null 2>&1 &
pids+=($!)

status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done

# One line per run: id, status, seed, folds, kappa (from summary.json; run.log has the rest).
python3 - "$OUTDIR" <<'PY'
import json, pathlib, sys
root = pathlib.Path(sys.argv[1])
runs = sorted(root.glob("results_*/summary.json"), key=lambda p: int(p.parent.name.split("_")[1]))
for path in runs:
    s = json.loads(path.read_text())
    kappa = s.get("best_val_kappa")
    print(f"{s['run_id']:<12} {s['status']:<11} seed={s['seed']:<4} "
          f"cv_folds={s['hyperparameters'].get('cv_folds', 0)} "
          f"kappa={kappa if kappa is None else round(kappa, 3)}")
PY
exit $status
