#!/usr/bin/env bash
# The pipeline from the command line, each stage chained through its artifact.
#   bash examples/pipeline.sh [OUT_DIR]      (needs `enofctl` on PATH, e.g. an activated .venv)
set -euo pipefail
out=${1:-runs/example}
mkdir -p "$out"
enofctl teacher train --dataset digits --epochs 10 --out "$out/t.safetensors" --quiet
enofctl convert "$out/t.safetensors" --T 4 --out "$out/s0.safetensors"
enofctl distill --teacher "$out/t.safetensors" --student "$out/s0.safetensors" --epochs 10 \
  --out "$out/s.safetensors" --quiet
enofctl eval "$out/t.safetensors" "$out/s.safetensors" --T 1,2,4 --report "$out/report" --json > "$out/eval.json"
enofctl inspect "$out/s.safetensors"
