#!/usr/bin/env bash
# The distill step on one GPU against the ANN at B*T, with and without the Triton neuron kernel (issue #18).
# Prepared to run in at most 8 minutes on one GPU; writes benchmarks/gpu.md.
#   bash benchmarks/gpu.sh            (from the repository root, enofctl installed or PYTHONPATH=.)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
out=benchmarks/gpu.md
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to measure')"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
  echo "# The distill step on a GPU (issue #18)"
  echo
  echo "\`bash benchmarks/gpu.sh\`, $(date -u +%Y-%m-%d). Throughput in images/s (an SNN image is T steps) and"
  echo "peak memory allocated by a training step above the model's, each also as a ratio to the same network"
  echo "as an ANN at batch B*T in the same run. 'Triton': the fused neuron kernel; 'PyTorch': ENOFCTL_TRITON_NEURON=0."
  echo "The kernel covers float32 only: the bf16 rows run the PyTorch neuron in both columns."
  echo
  timeout 450 "$PY" benchmarks/gpu_step.py --models resnet20 resnet19 --B 64 128 --T 4 --steps 10
} > "$tmp"
mv "$tmp" "$out"
trap - EXIT
cat "$out"
