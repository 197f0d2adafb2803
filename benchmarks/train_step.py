"""Training-step and inference cost of the spiking student against the same network as an ANN at batch B*T.

    python benchmarks/train_step.py [--width 1.0] [--B 32] [--T 4] [--steps 5] [--threads 2]

Each measurement runs in its own process (so peak RSS is its own): build the model, note the peak RSS
(the model-loaded baseline), run warm-up + timed steps, note the peak again. Rows: the ANN at batch B*T
(train, infer), the student as `distill` trains it (CE + L_AF, the frozen teacher's forward included) and
without the teacher, and student inference (no autograd). Prints a markdown table of throughput (images/s,
an SNN image being T steps) and extra peak memory, each as a ratio to the ANN's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(what: str, width: float, B: int, T: int, steps: int, threads: int) -> dict:
    import torch
    import torch.nn.functional as F

    from enofctl.losses import laf_loss
    from enofctl.models import build_model
    from enofctl.spiking import SpikingSpec, ann_forward_with_feature, make_spiking

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    ann = build_model("resnet20", 10, 3, {"width": width})
    if what.startswith("snn"):
        model = make_spiking(ann, SpikingSpec(T=T), (3, 32, 32))
        teacher = build_model("resnet20", 10, 3, {"width": width}).eval() if what == "snn-distill" else None
        batch = B
    else:
        model, teacher, batch = ann, None, B * T
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    base = _peak_mb()

    def step():
        if what.endswith("infer"):
            model.eval()
            with torch.inference_mode():
                model(x)
            return
        model.train()
        if teacher is not None:
            logits, f_s = model(x, with_feature=True)
            with torch.no_grad():
                z_t, _ = ann_forward_with_feature(teacher, x)
            loss = F.cross_entropy(logits, y) + 0.1 * laf_loss(f_s, z_t, teacher.get_classifier(), 20.0)
        else:
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = (time.perf_counter() - t0) / steps
    images = B  # an SNN image is T steps; the ANN at B*T does the same convolution work for B images
    return {"what": what, "seconds_per_step": dt, "images_per_s": images / dt, "extra_peak_mb": _peak_mb() - base}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--B", type=int, default=32)
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(measure(a.one, a.width, a.B, a.T, a.steps, a.threads)))
        return
    rows = {}
    for what in ("ann-train", "snn-distill", "snn-train", "ann-infer", "snn-infer"):
        out = subprocess.run([sys.executable, __file__, "--one", what, "--width", str(a.width), "--B", str(a.B),
                              "--T", str(a.T), "--steps", str(a.steps), "--threads", str(a.threads)],
                             capture_output=True, text=True, check=True)
        rows[what] = json.loads(out.stdout.strip().splitlines()[-1])
    import torch

    print(f"resnet20 width {a.width}, 32x32, B={a.B}, T={a.T}, {a.threads} threads, torch {torch.__version__}\n")
    print("| step | s/step | images/s | x ANN | extra peak MB | x ANN |")
    print("|---|---|---|---|---|---|")
    for what, r in rows.items():
        ref = rows["ann-train" if "train" in what or "distill" in what else "ann-infer"]
        mem_ratio = r["extra_peak_mb"] / ref["extra_peak_mb"] if ref["extra_peak_mb"] > 0 else float("nan")
        print(f"| {what} | {r['seconds_per_step']:.3f} | {r['images_per_s']:.1f} | "
              f"{r['images_per_s'] / ref['images_per_s']:.2f} | {r['extra_peak_mb']:.0f} | {mem_ratio:.2f} |")


if __name__ == "__main__":
    main()
