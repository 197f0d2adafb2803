"""Why a calibrated student loses accuracy when it trains with BatchNorm in batch-statistics mode: on one
shuffled training batch, each BatchNorm layer's input variance in the calibrated student (per channel, as a
ratio to the running variance it was calibrated with) and in the teacher, and the student's cross-entropy and
top-1 on the batch with BatchNorm using its running statistics (eval, `--bn frozen`) or the batch's (train,
`--bn batch`).

    python benchmarks/bn_drift.py TEACHER.safetensors --T 8 [--batch-size 256] [--calibrate 8]
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn as nn
import torch.nn.functional as F

from enofctl import artifacts
from enofctl.data import data_at, load_dataset
from enofctl.spiking import ann_forward_with_feature
from enofctl.stages.common import batches_on
from enofctl.stages.convert import SurrogateConvertConfig, convert_teacher
from enofctl.stages.loop import train_mode


def variance_ratios(model: nn.Module, run) -> dict[str, float]:
    """Each BatchNorm layer's mean over channels of (batch variance of its input / running variance)."""
    ratios, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            def hook(mod, inp, _out, name=name):
                dims = [0, *range(2, inp[0].dim())]
                ratios[name] = (inp[0].var(dims) / mod.running_var).mean().item()
            hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        run()
    for h in hooks:
        h.remove()
    return ratios


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("teacher")
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--calibrate", type=int, default=8)
    args = ap.parse_args()
    t = artifacts.load(args.teacher, expect="teacher")
    m = t.manifest
    student, s_manifest = convert_teacher(t, SurrogateConvertConfig(T=args.T, calibrate=args.calibrate))
    data = data_at(load_dataset(m.data.dataset, m.data.data_dir, frames=m.data.frames), args.T)
    spec = s_manifest.model
    x, y = next(batches_on(data.train, torch.device("cpu"), spec.mean, spec.std, batch_size=args.batch_size,
                           shuffle=True, generator=torch.Generator().manual_seed(1)))
    teacher = t.build().eval()
    student.eval()
    s_ratio = variance_ratios(student.body, lambda: student(x))
    t_ratio = variance_ratios(teacher, lambda: ann_forward_with_feature(teacher, x))
    print("| BatchNorm layer | teacher: batch var / running var | calibrated student |")
    print("|---|---|---|")
    for name, r in s_ratio.items():
        print(f"| {name} | {t_ratio.get(name.removeprefix('body.'), float('nan')):.2f} | {r:.2f} |")
    print(f"\nmedian over layers: teacher {statistics.median(t_ratio.values()):.2f}, "
          f"student {statistics.median(s_ratio.values()):.2f}\n")
    for label, frozen in (("running statistics (eval, --bn frozen)", True), ("batch statistics (--bn batch)", False)):
        train_mode(student, frozen_norm=frozen)
        with torch.no_grad():
            logits = student(x)
        print(f"student with {label}: cross-entropy {F.cross_entropy(logits, y).item():.3f}, "
              f"top-1 {(logits.argmax(1) == y).double().mean().item() * 100:.1f} % on the batch")
    with torch.no_grad():
        z = ann_forward_with_feature(teacher, x)[0]
    print(f"teacher: cross-entropy {F.cross_entropy(z, y).item():.3f}, "
          f"top-1 {(z.argmax(1) == y).double().mean().item() * 100:.1f} %")


if __name__ == "__main__":
    main()
