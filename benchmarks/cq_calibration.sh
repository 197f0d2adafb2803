#!/usr/bin/env bash
# Bias calibration after CQ conversion (convert --method cq --calibrate N), recorded on a trained CQ teacher.
#   bash benchmarks/cq_calibration.sh TEACHER OUT [EVAL_OPTIONS...]
# Converts at T = Q = 8 with and without --calibrate 8, with float and 8-bit weights, then evaluates the
# teacher and the four IF networks at T = 4, 8, 16 (one after another; each step's wall time is printed).
# CPU: run it with OMP_NUM_THREADS set to the cores you can spare.
set -euo pipefail
teacher=$1; out=$2; shift 2
E=${ENOFCTL:-.venv/bin/enofctl}
mkdir -p "$out"
step() {  # step NAME COMMAND...: run, print its wall time (on stderr: stdout may be a JSON file)
  local name=$1; shift
  local start=$SECONDS
  "$@"
  echo "$name: $(( SECONDS - start ))s" >&2
}
step convert $E convert "$teacher" --method cq --T 8 --out "$out/snn.safetensors"
step convert-cal8 $E convert "$teacher" --method cq --T 8 --calibrate 8 --device cpu "$@" --out "$out/snn_cal8.safetensors"
step convert-w8 $E convert "$teacher" --method cq --T 8 --weight-bits 8 --out "$out/snn_w8.safetensors"
step convert-w8-cal8 $E convert "$teacher" --method cq --T 8 --weight-bits 8 --calibrate 8 --device cpu "$@" \
  --out "$out/snn_w8_cal8.safetensors"
step eval-teacher $E eval "$teacher" --device cpu --speed-batches 0 --json --quiet "$@" > "$out/eval_teacher.json"
for s in snn snn_cal8 snn_w8 snn_w8_cal8; do
  step "eval-$s" $E eval "$out/$s.safetensors" --T 4,8,16 --device cpu --speed-batches 0 --json --quiet "$@" \
    > "$out/eval_$s.json"
done
