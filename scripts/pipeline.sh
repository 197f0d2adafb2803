#!/usr/bin/env bash
# Set up a virtual environment (if needed) and run the whole pipeline on the bundled digits dataset:
# teacher train -> convert -> distill (T=4, L_AF + RepAct) -> eval with a report. Outputs go to runs/digits/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/enofctl ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -e .
fi
E=.venv/bin/enofctl
out=runs/digits
mkdir -p "$out"
start=$(date +%s)
$E teacher train --dataset digits --out "$out/teacher.safetensors"
$E convert "$out/teacher.safetensors" --T 4 --out "$out/student0.safetensors"
$E distill --teacher "$out/teacher.safetensors" --student "$out/student0.safetensors" --out "$out/student.safetensors"
$E eval "$out/teacher.safetensors" "$out/student.safetensors" --report "$out/report"
echo "pipeline took $(( $(date +%s) - start ))s; report in $out/report/"
