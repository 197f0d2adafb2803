"""Calibrated conversion, measured: a converted student's accuracy before any training, for each calibration
variant, at several T, on one teacher.

    python benchmarks/calibration.py TEACHER [--batches 8] [--limit 2000] [--T 1,2,4,8] [--seeds 0]

Variants (every one starts from the same converted student, EnOF's neuron unless --decay/--reset say otherwise):
  plain        the teacher's weights copied, nothing else (what `convert --no-calibrate` writes)
  bn           BatchNorm statistics re-estimated under the spiking dynamics (no labels, no gradient)
  bn+fit       bn, then the per-channel threshold/amplitude fit
  fit          the per-channel threshold/amplitude fit alone (what `convert --calibrate N` writes)
Prints a markdown table (top-1 % on the first --limit test images; the teacher on the same images) and the
calibration time of each variant.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from enofctl import artifacts
from enofctl.data import load_dataset, normalize
from enofctl.schema import NeuronSpec, SpikingSpec
from enofctl.spiking import make_spiking
from enofctl.spiking.calibrate import calibrate_student, reestimate_bn


@torch.no_grad()
def top1(net, data, mean, std, limit: int) -> float:
    net.eval()
    right = n = 0
    for x, y in data.test.batches(250, limit=limit):
        right += int((net(normalize(x, mean, std)).argmax(1) == y).sum())
        n += len(y)
    return 100 * right / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("teacher")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--limit", type=int, default=2000)
    p.add_argument("--T", default="1,2,4,8")
    p.add_argument("--calibrate-T", type=int, default=4)
    p.add_argument("--seeds", default="0")
    p.add_argument("--decay", type=float, default=0.25)
    p.add_argument("--reset", default="hard")
    p.add_argument("--variants", default="plain,bn,bn+fit,fit")
    a = p.parse_args()
    art = artifacts.load(a.teacher, expect="teacher")
    m = art.manifest
    data = load_dataset(m.data.dataset, m.data.data_dir)
    ann = art.build_ann().eval()
    Ts = [int(t) for t in a.T.split(",")]
    neuron = NeuronSpec(decay=a.decay, reset=a.reset)
    print(f"teacher {a.teacher}: {top1(ann, data, m.model.mean, m.model.std, a.limit):.2f} % on the first "
          f"{a.limit} test images; calibrated at T = {a.calibrate_T} on {a.batches} x {a.batch_size} training "
          f"images; neuron decay {a.decay}, {a.reset} reset\n")
    print("| variant | seed | calibration s | " + " | ".join(f"T = {t}" for t in Ts) + " |")
    print("|---|---|---|" + "---|" * len(Ts))
    for seed in [int(s) for s in a.seeds.split(",")]:
        gen = torch.Generator().manual_seed(seed)
        batches = [normalize(x, m.model.mean, m.model.std) for x, _ in
                   data.train.batches(a.batch_size, shuffle=True, generator=gen, limit=a.batches * a.batch_size)]
        for variant in a.variants.split(","):
            spec = SpikingSpec(T=a.calibrate_T, neuron=neuron, scaling="channel" if "fit" in variant else "none")
            snn = make_spiking(copy.deepcopy(ann), spec, m.model.input_size)
            t0 = time.perf_counter()
            if variant.startswith("bn"):
                reestimate_bn(snn, batches)
            if "fit" in variant:
                calibrate_student(snn, ann, batches)
            seconds = time.perf_counter() - t0
            accs = []
            for T in Ts:
                snn.set_T(T)
                accs.append(top1(snn, data, m.model.mean, m.model.std, a.limit))
            print(f"| {variant} | {seed} | {seconds:.1f} | " + " | ".join(f"{x:.2f}" for x in accs) + " |",
                  flush=True)


if __name__ == "__main__":
    main()
