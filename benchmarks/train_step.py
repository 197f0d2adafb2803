"""Training-step and inference cost of the spiking student against the same network as an ANN at batch B*T.

    python benchmarks/train_step.py [--width 1.0] [--B 32] [--T 4] [--steps 5] [--threads 2]

    python benchmarks/train_step.py --sweep [--width 1.0] [--steps 3]     # cost against T and B

Each measurement runs in its own process (so peak RSS is its own): build the model, note the peak RSS
(the model-loaded baseline), run warm-up + timed steps, note the peak again. Rows: the ANN at batch B*T
(train, infer), the student as `distill` trains it (CE + L_AF, the frozen teacher's forward included) and
without the teacher, and student inference (no autograd). Rows ending in ``-plain`` run the student as it
was before optimization: the per-step neuron loop (``neuron_multistep``), spikes saved as floats, the first
layer computed at every step. Prints a markdown table of throughput (images/s, an SNN image being T steps)
and extra peak memory, each as a ratio to the ANN's.
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


def use_plain_loop(net) -> None:
    """The student as before optimization: per-step loop, float spikes saved, first layer at every step."""
    from enofctl.spiking import neuron_multistep

    net.stem_once = net.pack_spikes = False
    for m in net.neurons().values():
        m.forward = lambda x, m=m: neuron_multistep(x.unflatten(0, (m.T, -1)), m.spec).flatten(0, 1)


def step_loss(model, teacher, x, y):
    """The training loss of one step: distill's CE + 0.1 * L_AF (tau 20) with a teacher, plain CE without."""
    import torch
    import torch.nn.functional as F

    from enofctl.losses import laf_loss
    from enofctl.spiking import ann_forward_with_feature

    if teacher is None:
        return F.cross_entropy(model(x), y)
    logits, f_s = model(x, with_feature=True)
    with torch.no_grad():
        z_t, _ = ann_forward_with_feature(teacher, x)
    return F.cross_entropy(logits, y) + 0.1 * laf_loss(f_s, z_t, teacher.get_classifier(), 20.0)


def measure(what: str, width: float, B: int, T: int, steps: int, threads: int, variant: str = "eager") -> dict:
    import torch

    from enofctl.models import build_model
    from enofctl.schema import SpikingSpec
    from enofctl.spiking import make_spiking

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    ann = build_model("resnet20", 10, 3, {"width": width})
    if what.startswith("snn"):
        model = make_spiking(ann, SpikingSpec(T=T), (3, 32, 32))
        if what.endswith("-plain"):
            use_plain_loop(model)
            what = what.removesuffix("-plain")
        teacher = build_model("resnet20", 10, 3, {"width": width}).eval() if what == "snn-distill" else None
        batch = B
    else:
        model, teacher, batch = ann, None, B * T
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    if variant == "channels-last":
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    elif variant == "compile":
        model = torch.compile(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    base = _peak_mb()

    def step():
        if what.endswith("infer"):
            model.eval()
            with torch.inference_mode():
                model(x)
            return
        model.train()
        loss = step_loss(model, teacher, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2 if variant == "compile" else 1):  # warm-up (and compilation)
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = (time.perf_counter() - t0) / steps
    images = B  # an SNN image is T steps; the ANN at B*T does the same convolution work for B images
    return {"what": what, "B": B, "T": T, "seconds_per_step": dt, "images_per_s": images / dt,
            "extra_peak_mb": _peak_mb() - base}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--B", type=int, default=32)
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sweep", action="store_true", help="cost against T and B instead of the ANN table")
    p.add_argument("--variant", choices=("eager", "channels-last", "compile"), default="eager",
                   help="applied to every row alike: channels-last memory format, or torch.compile")
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(measure(a.one, a.width, a.B, a.T, a.steps, a.threads, a.variant)))
        return
    if a.sweep:
        sweep(a)
        return
    rows = {what: run_one(what, a, a.B, a.T) for what in
            ("ann-train", "snn-distill", "snn-train", "snn-train-plain", "ann-infer", "snn-infer", "snn-infer-plain")}
    import torch

    print(f"resnet20 width {a.width}, 32x32, B={a.B}, T={a.T}, {a.threads} threads, {a.variant}, "
          f"torch {torch.__version__}\n")
    print("| step | s/step | images/s | x ANN | extra peak MB | x ANN |")
    print("|---|---|---|---|---|---|")
    for what, r in rows.items():
        ref = rows["ann-train" if "train" in what or "distill" in what else "ann-infer"]
        mem_ratio = r["extra_peak_mb"] / ref["extra_peak_mb"] if ref["extra_peak_mb"] > 0 else float("nan")
        print(f"| {what} | {r['seconds_per_step']:.3f} | {r['images_per_s']:.1f} | "
              f"{r['images_per_s'] / ref['images_per_s']:.2f} | {r['extra_peak_mb']:.0f} | {mem_ratio:.2f} |")


def run_one(what: str, a, B: int, T: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", what, "--width", str(a.width), "--B", str(B),
                          "--T", str(T), "--steps", str(a.steps), "--threads", str(a.threads),
                          "--variant", a.variant],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def sweep(a) -> None:
    """Cost per sample-step against T (B fixed) and against B (T fixed): flat columns mean linear cost."""
    import torch

    print(f"resnet20 width {a.width}, 32x32, {a.threads} threads, torch {torch.__version__}\n")
    print("| step | B | T | s/step | ms per sample-step | extra peak MB | KB per sample-step |")
    print("|---|---|---|---|---|---|---|")
    grid = [(a.B, T) for T in (1, 2, 4, 8)] + [(B, a.T) for B in (16, 64)]
    for what in ("snn-train", "snn-infer"):
        for B, T in grid:
            r = run_one(what, a, B, T)
            n = B * T
            print(f"| {what} | {B} | {T} | {r['seconds_per_step']:.3f} | {1000 * r['seconds_per_step'] / n:.2f} | "
                  f"{r['extra_peak_mb']:.0f} | {1024 * r['extra_peak_mb'] / n:.0f} |", flush=True)


if __name__ == "__main__":
    main()
