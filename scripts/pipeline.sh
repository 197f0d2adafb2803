#!/usr/bin/env bash
# Set up a virtual environment (if needed) and run the whole pipeline on the bundled digits dataset:
# teacher train -> convert -> distill (T=4, L_AF + RepAct) -> eval at T = 1, 2, 4, 8 with a report (the student
# is trained at T = 4; the sweep shows what it does with fewer or more steps). Outputs go to runs/digits/.
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
$E eval "$out/teacher.safetensors" "$out/student.safetensors" --T 1,2,4,8 --report "$out/report"
echo "pipeline took $(( $(date +%s) - start ))s; report in $out/report/"
