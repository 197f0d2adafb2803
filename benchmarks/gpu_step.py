"""The distill step on a GPU against the same network as an ANN at batch B*T, with and without the Triton
neuron kernel (issue #18). Run by ``benchmarks/gpu.sh``; prints a markdown table.

    python benchmarks/gpu_step.py [--models resnet20 resnet19] [--B 64 128] [--T 4] [--steps 10]

Rows per model, B and precision (fp32, bf16 autocast): the ANN at B*T (train step), the student as
``distill`` trains it (CE + L_AF, the frozen teacher's forward included) with the Triton neuron
(``ENOFCTL_TRITON_NEURON=auto``) and with the PyTorch neuron (``=0``). Throughput is images/s (an SNN image
is T steps), memory the peak allocated by the step above the model's; both also as ratios to the ANN's.
Under bf16 autocast the neurons' inputs are bf16, which the kernel does not cover (float32 only): its bf16
rows run the PyTorch neuron in both columns until it does. ``--device cpu`` checks the script itself (no
Triton rows).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from train_step import step_loss  # benchmarks/ is the script's folder

from enofctl.models import build_model
from enofctl.schema import SpikingSpec
from enofctl.spiking import make_spiking


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(what: str, model_name: str, B: int, T: int, steps: int, bf16: bool, device: str) -> dict:
    torch.manual_seed(0)
    os.environ["ENOFCTL_TRITON_NEURON"] = "0" if what == "snn-pytorch" else "auto"
    ann = build_model(model_name, 10, 3, {})
    if what.startswith("snn"):
        model = make_spiking(ann, SpikingSpec(T=T), (3, 32, 32))
        teacher, batch = build_model(model_name, 10, 3, {}).eval().to(device), B
    else:
        model, teacher, batch = ann, None, B * T
    model = model.to(device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        model.train()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = step_loss(model, teacher, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up (cuDNN autotune, Triton compiles)
        step()
    _sync(device)
    base = torch.cuda.memory_allocated() if device == "cuda" else 0
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    dt = (time.perf_counter() - t0) / steps
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if device == "cuda" else float("nan")
    return {"images_per_s": B / dt, "extra_mb": peak}


def _cell(row: dict | None, ann: dict, key: str) -> str:
    return "-" if row is None else f"{row[key]:.0f} ({row[key] / ann[key]:.2f}x)"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=["resnet20", "resnet19"])
    p.add_argument("--B", nargs="+", type=int, default=[64, 128])
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--device", default="cuda")
    a = p.parse_args()
    if a.device == "cuda":
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name()
    else:
        name = "cpu (a check of the script, not a measurement)"
    print(f"Device: {name}; torch {torch.__version__}; T = {a.T}; {a.steps} timed steps after 3 warm-up\n")
    print("| model | B | precision | ANN at B*T img/s | distill Triton img/s (x ANN) | distill PyTorch img/s (x ANN) "
          "| ANN MB | Triton MB (x ANN) | PyTorch MB (x ANN) |")
    print("|---|---|---|---|---|---|---|---|---|")
    whats = ["ann", "snn-triton", "snn-pytorch"] if a.device == "cuda" else ["ann", "snn-pytorch"]
    for model_name in a.models:
        for B in a.B:
            for bf16 in (False, True):
                if bf16 and a.device == "cuda" and not torch.cuda.is_bf16_supported():
                    continue
                r = {w: measure(w, model_name, B, a.T, a.steps, bf16, a.device) for w in whats}
                ann = r["ann"]
                cells = [_cell(r.get(w), ann, "images_per_s") for w in ("snn-triton", "snn-pytorch")]
                mem = [_cell(r.get(w), ann, "extra_mb") for w in ("snn-triton", "snn-pytorch")]
                print(f"| {model_name} | {B} | {'bf16' if bf16 else 'fp32'} | {ann['images_per_s']:.0f} | "
                      f"{cells[0]} | {cells[1]} | {ann['extra_mb']:.0f} | {mem[0]} | {mem[1]} |", flush=True)


if __name__ == "__main__":
    main()
