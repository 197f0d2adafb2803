#!/usr/bin/env bash
# The event pipeline on simulated events (benchmarks/make_dvs_fmnist.py; NOT N-MNIST): a teacher on T = 8
# frames (17x17), a T = 8 student distilled from it (BatchNorm statistics frozen at the calibrated ones),
# eval of both (the student at T = 4, 8, 10, each on its own frames), and the data-time check. Sized for a
# 2-core CPU (about 45 min); see benchmarks/events_fmnist.md.
# Usage: bash benchmarks/events_fmnist.sh [OUT=runs/events_fmnist]   (needs enofctl[events])
set -euo pipefail
OUT=${1:-runs/events_fmnist}
PY=${PY:-python}
mkdir -p "$OUT"
export ENOFCTL_CACHE=${ENOFCTL_CACHE:-$OUT/cache}
DATA=$OUT/dvs_fmnist
STUDENT_T=${STUDENT_T:-8}
[ -d "$DATA/Train" ] || $PY benchmarks/make_dvs_fmnist.py "$DATA" --train 8000 --test 1000
timed() { /usr/bin/time -f "$1 cpu_user_s=%U cpu_sys_s=%S wall_s=%e" "${@:2}"; }
timed teacher $PY -m enofctl teacher train --dataset nmnist --data-dir "$DATA" --frames 8 --event-size 17 \
    --epochs 5 --out "$OUT/t8.safetensors" --quiet
timed "student T=$STUDENT_T" $PY -m enofctl distill --teacher "$OUT/t8.safetensors" --T "$STUDENT_T" \
    --bn frozen --lr 0.003 --epochs 4 --out "$OUT/s$STUDENT_T.safetensors" --quiet
timed eval $PY -m enofctl eval "$OUT/t8.safetensors" "$OUT/s$STUDENT_T.safetensors" --T 4,8,10 \
    --speed-batches 0 --report "$OUT/report" --json > "$OUT/eval.json"
$PY benchmarks/events_data_time.py "$OUT/s$STUDENT_T.safetensors"
