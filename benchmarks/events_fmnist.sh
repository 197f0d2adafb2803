#!/usr/bin/env bash
# The event pipeline on simulated events (benchmarks/make_dvs_fmnist.py; NOT N-MNIST): a teacher on T = 8
# frames (17x17), students at T = 4, 8 and 10 distilled from it (calibrated start, BatchNorm statistics frozen
# at the calibrated ones), eval of all of them (each T on its own frames), and the data-time check.
# Sized for a 2-core CPU (about an hour with the defaults); see benchmarks/events_fmnist.md.
# Usage: bash benchmarks/events_fmnist.sh [OUT=runs/events_fmnist]   (needs enofctl[events])
#   EPOCHS=24 STUDENTS=8 bash benchmarks/events_fmnist.sh    # the record's longer T = 8 run
set -euo pipefail
OUT=${1:-runs/events_fmnist}
PY=${PY:-python}
EPOCHS=${EPOCHS:-12}
STUDENTS=${STUDENTS:-"4 8 10"}
mkdir -p "$OUT"
export ENOFCTL_CACHE=${ENOFCTL_CACHE:-$OUT/cache}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # as in the record (one thread per process)
DATA=$OUT/dvs_fmnist
[ -d "$DATA/Train" ] || $PY benchmarks/make_dvs_fmnist.py "$DATA" --train 8000 --test 1000
timed() { /usr/bin/time -f "$1 cpu_user_s=%U cpu_sys_s=%S wall_s=%e" "${@:2}"; }
[ -f "$OUT/t8.safetensors" ] || timed teacher $PY -m enofctl teacher train --dataset nmnist --data-dir "$DATA" \
    --frames 8 --event-size 17 --epochs 5 --out "$OUT/t8.safetensors" --quiet
students=()
for T in $STUDENTS; do
  s=$OUT/s${T}_e$EPOCHS.safetensors
  timed "student T=$T" $PY -m enofctl distill --teacher "$OUT/t8.safetensors" --T "$T" --bn frozen --lr 0.01 \
      --warmup-epochs 1 --epochs "$EPOCHS" --out "$s" --quiet
  students+=("$s")
done
timed eval $PY -m enofctl eval "$OUT/t8.safetensors" "${students[@]}" --T 4,8,10 --speed-batches 0 \
    --report "$OUT/report" --json > "$OUT/eval.json"
$PY benchmarks/events_data_time.py "${students[0]}"
