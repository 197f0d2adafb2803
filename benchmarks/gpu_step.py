"""The distill step on a GPU against the same network as an ANN at batch B*T, with and without the Triton
neuron kernel (issue #18). Run by ``benchmarks/gpu.sh``; prints a markdown table.

    python benchmarks/gpu_step.py [--models resnet20 resnet19] [--B 64 128] [--T 4] [--steps 10]

Rows per model, B and precision (fp32, bf16 autocast): the ANN at B*T (train step), the student as
``distill`` trains it (CE + L_AF, the frozen teacher's forward included) with the Triton neuron
(``ENOFCTL_TRITON_NEURON=auto``) and with the PyTorch neuron (``=0``). Throughput is images/s (an SNN image
is T steps), memory the peak allocated by the step above the model's; both also as ratios to the ANN's.
Under bf16 autocast the neurons' inputs are bf16: the kernel takes them (its membrane in float32), the
PyTorch neuron computes in bf16. ``--device cpu`` checks the script itself (no Triton rows).

    python benchmarks/gpu_step.py --part data [--B 64] [--T 4] [--workers 8]
    python benchmarks/gpu_step.py --part profile [--models resnet20] [--B 64] [--T 4]

``--part data``: the images/s each data path delivers against the images/s the distill step consumes
(resnet20, fp32, the first B): the in-memory path (a CIFAR-sized TensorSplit held on the device, random
crop + flip + Cutout there, normalized) and an image folder (PNGs written to a temporary folder, decoded by
``--workers`` processes into pinned memory, crop + flip per image, copied to the device). ``--part
profile``: the neuron's share of the distill step under torch.profiler: the device time of the neuron's
autograd functions (forward and backward, their kernels included) over the wall time of the profiled steps.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

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


# ----------------------------------------------------------------------------------------------------------
# --part data: what each data path delivers against what the distill step consumes


def _delivered(split, device: str, B: int, batches: int) -> float:
    """images/s of ``batches`` training batches of ``split`` as the training loop draws them (shuffled,
    augmented, normalized, on ``device``), after one warm-up pass over a batch."""
    from enofctl.data import Augment
    from enofctl.stages.common import batches_on

    info = split.info
    g = torch.Generator().manual_seed(0)

    def one_pass(n: int) -> int:
        seen = 0
        it = batches_on(split, torch.device(device), info.mean, info.std, batch_size=B, shuffle=True,
                        augment=Augment(cutout=8), generator=g, limit=n * B, drop_last=True)
        for x, _ in it:
            seen += len(x)
        _sync(device)
        return seen

    one_pass(1)  # warm-up: workers start, the device wakes
    t0 = time.perf_counter()
    seen = one_pass(batches)
    return seen / (time.perf_counter() - t0)


def _png_folder(root: Path, n: int, size: int) -> Path:
    """``n`` random RGB PNGs of ``size`` x ``size`` in two class folders under ``root``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"c{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def data_rows(a) -> None:
    from enofctl.data import DATASETS, FolderSplit, TensorSplit, split_on

    B, device, batches = a.B[0], a.device, a.data_batches
    step = measure("snn-triton" if device == "cuda" else "snn-pytorch", "resnet20", B, a.T, a.steps, False, device)
    used = step["images_per_s"]
    print(f"The distill step (resnet20, 32x32, fp32, B = {B}, T = {a.T}) consumes {used:.0f} images/s.\n")
    print("| data path | images/s delivered | x the step's consumption |")
    print("|---|---|---|")
    cifar = DATASETS["cifar10"]
    n = (batches + 1) * B
    mem = TensorSplit(torch.rand(n, 3, 32, 32), torch.randint(0, 10, (n,)), cifar)
    rate = _delivered(split_on(mem, torch.device(device)), device, B, batches)
    where = "on the GPU" if device == "cuda" else "on the CPU"
    print(f"| in memory, {where}: crop + flip + Cutout, normalize | {rate:.0f} | {rate / used:.2f} |", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = _png_folder(Path(tmp), n, 40)
        info = replace(DATASETS["imagefolder"], image_size=(32, 32), num_classes=2, mean=cifar.mean, std=cifar.std)
        folder = split_on(FolderSplit(root, info, True), torch.device(device), a.workers)
        rate = _delivered(folder, device, B, batches)
        pin = ", pinned" if folder.pin_memory else ""
        print(f"| image folder (40x40 PNGs), {folder.workers} workers{pin}: crop + flip per image, Cutout, "
              f"normalize, to the device | {rate:.0f} | {rate / used:.2f} |", flush=True)


# ----------------------------------------------------------------------------------------------------------
# --part profile: the neuron's share of the distill step

NEURON_EVENTS = ("_NeuronSequence", "_NeuronSequenceBackward", "TritonNeuronSequence",
                 "TritonNeuronSequenceBackward")  # the neuron's autograd functions, forward and backward


def neuron_share(model_name: str, B: int, T: int, steps: int, device: str, triton: bool) -> dict:
    from torch.profiler import ProfilerActivity, profile

    os.environ["ENOFCTL_TRITON_NEURON"] = "auto" if triton else "0"
    torch.manual_seed(0)
    model = make_spiking(build_model(model_name, 10, 3, {}), SpikingSpec(T=T), (3, 32, 32)).to(device)
    teacher = build_model(model_name, 10, 3, {}).eval().to(device)
    x = torch.randn(B, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (B,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        model.train()
        loss = step_loss(model, teacher, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    _sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        wall = time.perf_counter() - t0
    key = "device_time_total" if device == "cuda" else "cpu_time_total"
    found = {e.key: getattr(e, key, 0.0) for e in prof.key_averages() if e.key in NEURON_EVENTS}
    neuron_us = sum(found.values())
    return {"step_ms": 1e3 * wall / steps, "neuron_ms": neuron_us / 1e3 / steps,
            "share": neuron_us / 1e6 / wall, "events": sorted(found)}


def profile_rows(a) -> None:
    clock = "CUDA time of its kernels" if a.device == "cuda" else "CPU time (a check of the script)"
    print(f"The neuron's share of the distill step (fp32, T = {a.T}, {a.steps} profiled steps): the {clock} in the "
          "neuron's forward and backward over the step's wall time.\n")
    print("| model | B | neuron | step ms | neuron ms | neuron share | profiler events |")
    print("|---|---|---|---|---|---|---|")
    for model_name in a.models:
        for B in a.B:
            for triton in ((True, False) if a.device == "cuda" else (False,)):
                r = neuron_share(model_name, B, a.T, a.steps, a.device, triton)
                events = ", ".join(r["events"]) or "none found"
                print(f"| {model_name} | {B} | {'Triton' if triton else 'PyTorch'} | {r['step_ms']:.1f} | "
                      f"{r['neuron_ms']:.1f} | {r['share']:.0%} | {events} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--part", choices=("step", "data", "profile"), default="step")
    p.add_argument("--models", nargs="+", default=["resnet20", "resnet19"])
    p.add_argument("--B", nargs="+", type=int, default=[64, 128])
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--device", default="cuda")
    p.add_argument("--workers", type=int, default=None, help="--part data: image-folder workers (default: "
                   "enofctl's, the cores but one, at most 8)")
    p.add_argument("--data-batches", type=int, default=20, help="--part data: timed batches per data path")
    a = p.parse_args()
    if a.device == "cuda":
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name()
    else:
        name = "cpu (a check of the script, not a measurement)"
    print(f"Device: {name}; torch {torch.__version__}; T = {a.T}; {a.steps} timed steps after 3 warm-up\n")
    if a.part == "data":
        return data_rows(a)
    if a.part == "profile":
        return profile_rows(a)
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
