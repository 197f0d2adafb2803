#!/usr/bin/env bash
# The event pipeline on simulated events (benchmarks/make_dvs_fmnist.py; NOT N-MNIST): one teacher on
# T = 8 frames, students at T = 4, 8 and 10 distilled from it, eval of all, and the data-time check.
# Usage: bash benchmarks/events_fmnist.sh [OUT=runs/events_fmnist]   (needs enofctl[events])
set -euo pipefail
OUT=${1:-runs/events_fmnist}
PY=${PY:-python}
mkdir -p "$OUT"
export ENOFCTL_CACHE=${ENOFCTL_CACHE:-$OUT/cache}
DATA=$OUT/dvs_fmnist
N=2000
[ -d "$DATA/Train" ] || $PY benchmarks/make_dvs_fmnist.py "$DATA" --train 4000 --test 1000
timed() { /usr/bin/time -f "$1 cpu_user_s=%U cpu_sys_s=%S wall_s=%e" "${@:2}"; }
timed teacher $PY -m enofctl teacher train --dataset nmnist --data-dir "$DATA" --frames 8 --event-size 17 \
    --epochs 3 --limit-train $N --out "$OUT/t8.safetensors" --quiet
for T in 8 4 10; do
    timed "student T=$T" $PY -m enofctl distill --teacher "$OUT/t8.safetensors" --T $T --calibrate 2 \
        --epochs 2 --limit-train $N --out "$OUT/s$T.safetensors" --quiet
done
$PY -m enofctl eval "$OUT/t8.safetensors" "$OUT/s4.safetensors" "$OUT/s8.safetensors" "$OUT/s10.safetensors" \
    --speed-batches 0 --report "$OUT/report" --json > "$OUT/eval.json"
$PY benchmarks/events_data_time.py "$OUT/s8.safetensors" --limit-train $N
