#!/usr/bin/env bash
# CQ training and integrate-and-fire conversion, recorded on digits and Fashion-MNIST.
#   bash benchmarks/cq_conversion.sh DATASET EPOCHS_CLAMP EPOCHS_CQ [OUT]
# Staged training (CQ paper, Yan et al. AAAI 2021; README.md, "CQ training and integrate-and-fire
# conversion"): clamp to [0, 1] first, then clamp + quantization to Q = 8 levels
# starting from the clamp weights; then convert to an IF network at T = Q, and with 8-bit weights.
set -euo pipefail
ds=${1:-digits}; e1=${2:-30}; e2=${3:-10}; out=${4:-runs/cq_$ds}
E=${ENOFCTL:-.venv/bin/enofctl}
mkdir -p "$out"
start=$(date +%s)
$E teacher train --dataset "$ds" --model vgg7 --width 0.25 --act clamp --epochs "$e1" --out "$out/t_clamp.safetensors" --quiet
$E teacher train --dataset "$ds" --init "$out/t_clamp.safetensors" --act cq --levels 8 --epochs "$e2" --lr 0.01 \
  --out "$out/t_cq8.safetensors" --quiet
$E convert "$out/t_cq8.safetensors" --method cq --T 8 --out "$out/snn.safetensors"
$E convert "$out/t_cq8.safetensors" --method cq --T 8 --weight-bits 8 --out "$out/snn_w8.safetensors"
echo "training + conversion: $(( $(date +%s) - start ))s"
$E eval "$out/t_clamp.safetensors" "$out/t_cq8.safetensors" "$out/snn.safetensors" "$out/snn_w8.safetensors" \
  --T 2,4,8,16,32 --report "$out/report" --speed-batches 0 --quiet
echo "total: $(( $(date +%s) - start ))s"
