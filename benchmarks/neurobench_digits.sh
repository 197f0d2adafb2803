#!/usr/bin/env bash
# enofctl's counts beside NeuroBench's own on digits (benchmarks/neurobench_digits.md): a teacher (15 epochs), a
# RepAct and a no-RepAct student converted without calibration (binary 0/1 spikes, scaling "none") and distilled
# 10 epochs at T = 4, and the default calibrated student (scaling "channel", which NeuroBench cannot count),
# evaluated on all 360 test images with --neurobench. Needs `pip install -e ".[neurobench]"`. Outputs: runs/nb_digits/.
set -euo pipefail
cd "$(dirname "$0")/.."
E=${ENOFCTL:-.venv/bin/enofctl}
o=runs/nb_digits
mkdir -p "$o"
$E teacher train --dataset digits --epochs 15 --out "$o/teacher.safetensors" -q
$E convert "$o/teacher.safetensors" --T 4 --no-calibrate --out "$o/s0.safetensors" -q
$E distill --teacher "$o/teacher.safetensors" --student "$o/s0.safetensors" --epochs 10 --out "$o/student.safetensors" -q
$E convert "$o/teacher.safetensors" --T 4 --no-calibrate --no-repact --out "$o/s0n.safetensors" -q
$E distill --teacher "$o/teacher.safetensors" --student "$o/s0n.safetensors" --epochs 10 \
  --out "$o/student_norepact.safetensors" -q
$E convert "$o/teacher.safetensors" --T 4 --out "$o/student_calibrated.safetensors" -q
$E eval "$o/teacher.safetensors" "$o/student.safetensors" "$o/student_norepact.safetensors" \
  "$o/student_calibrated.safetensors" --neurobench --report "$o/report" --speed-batches 0 -q
