#!/usr/bin/env bash
# A CI pipeline: teacher -> distill -> eval with gates, on the bundled digits data.
# Stops with enofctl's exit code: 1 runtime failure, 2 usage error, 3 a gate failed.
#   bash examples/ci_pipeline.sh [OUT_DIR]     (needs `enofctl` on PATH)
# Knobs (environment): DATASET, EPOCHS, WIDTH, T, MIN_TOP1, MAX_SPIKES, MAX_ENERGY_RATIO; REUSE=1 keeps a
# teacher or student already in OUT_DIR (a cached stage) and only re-checks and re-evaluates it.
set -euo pipefail
out=${1:-runs/ci}
dataset=${DATASET:-digits}
epochs=${EPOCHS:-10}
mkdir -p "$out"
width_args=()
if [ -n "${WIDTH:-}" ]; then width_args=(--width "$WIDTH"); fi

reuse() { [ "${REUSE:-0}" = 1 ] && [ -f "$1" ]; }

reuse "$out/teacher.safetensors" ||
  enofctl teacher train --dataset "$dataset" "${width_args[@]}" --epochs "$epochs" --out "$out/teacher.safetensors" \
    --quiet
reuse "$out/student.safetensors" ||
  enofctl distill --teacher "$out/teacher.safetensors" --T "${T:-4}" --epochs "$epochs" \
    --out "$out/student.safetensors" --quiet
enofctl inspect "$out/student.safetensors" --deep --quiet   # validates the artifact as a stage loads it, prints nothing

gates=(--min-top1 "${MIN_TOP1:-0.9}")
if [ -n "${MAX_SPIKES:-}" ]; then gates+=(--max-spikes-per-sample "$MAX_SPIKES"); fi
if [ -n "${MAX_ENERGY_RATIO:-}" ]; then gates+=(--max-energy-ratio "$MAX_ENERGY_RATIO"); fi
status=0
enofctl eval "$out/teacher.safetensors" "$out/student.safetensors" --report "$out/report" --json \
  "${gates[@]}" > "$out/eval.json" || status=$?
echo "eval exit code: $status (report in $out/report/)"
exit "$status"
