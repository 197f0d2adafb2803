#!/usr/bin/env bash
# The distill step on one GPU against the ANN at B*T, with and without the Triton neuron kernel; the data paths
# against what the step consumes; the neuron's share of the step; enofctl against its peers (issue #18).
# Prepared to run in at most 8 minutes on one GPU (each part has its own timeout); writes benchmarks/gpu.md.
#   bash benchmarks/gpu.sh            (from the repository root, enofctl installed or PYTHONPATH=.)
#   bash benchmarks/gpu.sh --dry-run  (any machine: every part on the CPU at tiny sizes, to stdout; no gpu.md)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
out=benchmarks/gpu.md
dry=0
[ "${1:-}" = "--dry-run" ] && dry=1
if [ $dry = 1 ]; then
  step=(--device cpu --models resnet20 --B 4 --T 2 --steps 1)
  data=(--device cpu --B 8 --T 2 --steps 1 --data-batches 2 --workers 1)
  prof=(--device cpu --models resnet20 --B 4 --T 2 --steps 1)
  peers=(--device cpu --width 0.25 --B 2 --T 2 --steps 1 --threads 1)
else
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to measure')"
  step=(--models resnet20 resnet19 --B 64 128 --T 4 --steps 10)
  data=(--B 64 --T 4 --steps 10 --data-batches 30)
  prof=(--models resnet20 --B 64 --T 4 --steps 5)
  peers=(--device cuda --width 1.0 --B 64 --T 4 --steps 5 --threads 4)
fi

# part SECONDS TITLE COMMAND...: the command's output, or what it printed before it failed and a line saying so
part() {
  local limit=$1 title=$2
  shift 2
  echo
  echo "## $title"
  echo
  if ! timeout "$limit" "$@"; then
    echo
    echo "**Not finished: exit code or timeout (${limit} s) above; the rows before it stand.**"
  fi
}

report() {
  echo "# The distill step on a GPU (issue #18)"
  echo
  echo "\`bash benchmarks/gpu.sh\`, $(date -u +%Y-%m-%d)."
  echo
  echo "The step table: throughput in images/s (an SNN image is T steps) and peak memory allocated by a training"
  echo "step above the model's, each also as a ratio to the same network as an ANN at batch B*T in the same run."
  echo "Triton: the fused neuron kernel; PyTorch: ENOFCTL_TRITON_NEURON=0. The kernel takes bf16 inputs too"
  echo "(its membrane in float32): the bf16 rows compare it with the PyTorch neuron in bf16."
  part 180 "Throughput and memory of the distill step" "$PY" benchmarks/gpu_step.py --part step "${step[@]}"
  part 60 "Data paths against the step's consumption" "$PY" benchmarks/gpu_step.py --part data "${data[@]}"
  part 60 "The neuron's share of the step (torch.profiler)" "$PY" benchmarks/gpu_step.py --part profile "${prof[@]}"
  part 120 "enofctl against its peers (benchmarks/peers.py)" "$PY" benchmarks/peers.py "${peers[@]}"
}

if [ $dry = 1 ]; then
  report
  exit 0
fi
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
report > "$tmp"
mv "$tmp" "$out"
trap - EXIT
cat "$out"
