"""The NIR round trip of trained students: export each (average pools, and --sum-pool; RepAct students with
--split-head), read the file back with independent simulators, run the whole test split for the student's T
steps, and compare with `enofctl eval` of the same artifact: predictions per image and spikes per layer.

    PYTHONPATH=. python benchmarks/nir_roundtrip.py runs/s_r20.safetensors runs/s_vgg.safetensors \
        --readers snntorch,norse,nirtorch,norse-from_nir --out benchmarks/nir_roundtrip.md

Writes the markdown record (``--out``) and the raw figures beside it (``.json``); the exported graphs go to
``--workdir`` (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("students", nargs="+", type=Path)
    p.add_argument("--readers", default="snntorch,norse,nirtorch")
    p.add_argument("--out", type=Path, default=Path("benchmarks/nir_roundtrip.md"))
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--limit", type=int, default=None)
    args = p.parse_args()

    from enofctl import artifacts
    from enofctl.stages import EvalConfig, evaluate
    from enofctl.stages.export import ExportConfig, export, verify_export

    torch.set_num_threads(1)
    readers = [r.strip() for r in args.readers.split(",") if r.strip()]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="nir_roundtrip_"))
    work.mkdir(parents=True, exist_ok=True)
    rows, raw = [], []
    for student in args.students:
        m = artifacts.load(student).manifest
        ev = evaluate(student, EvalConfig(limit_test=args.limit, speed_batches=0))
        eval_spikes = {layer.name: layer.spikes_per_sample for layer in ev.runs[0].layers}
        for sum_pool in (False, True):
            out = work / f"{student.stem}{'_sum' if sum_pool else ''}.nir"
            t0 = time.perf_counter()
            split = bool(m.spiking.repact)  # RepAct's ReLU head stays out of the graph
            res = export(student, ExportConfig(sum_pool=sum_pool, split_head=split), out)
            export_s = time.perf_counter() - t0
            check = verify_export(out, student, readers, limit=args.limit)
            for r in check.readers:
                vs_eval = None
                if r.error is None:
                    # the reader's spikes per image against `enofctl eval`'s figure for each layer
                    vs_eval = all(abs(x.reader / check.samples - eval_spikes[x.name]) < 1e-9 for x in r.layers)
                rows.append({
                    "student": f"{m.model.name} w{m.model.kwargs.get('width', 1)}"
                               + (" (calibrated)" if m.spiking.scaling == "channel" else "")
                               + (" RepAct, --split-head" if split else ""), "file": student.name,
                    "pool": "SumPool2d" if sum_pool else "AvgPool2d", "reader": r.reader,
                    "samples": check.samples, "T": check.T, "eval_top1": ev.top1, "reader_top1": r.top1,
                    "agreement": r.agreement, "layers_equal": r.layers_equal, "layers": len(r.layers),
                    "spikes_eval": ev.spikes_per_sample * check.samples,
                    "spikes_reader": sum(x.reader for x in r.layers) if r.error is None else None,
                    "eval_per_layer_equal": vs_eval, "folded_equal": r.folded_spikes_equal,
                    "spikes_folded": sum(x.folded for x in r.layers) if r.error is None else None,
                    "max_logit_diff": r.max_logit_diff,
                    "seconds": r.seconds, "error": r.error, "nodes": res.nodes, "export_s": export_s,
                })
            raw.append(check.model_dump(mode="json"))
    env = {"python": platform.python_version(), "torch": torch.__version__,
           **{k: _version(k) for k in ("nir", "nirtorch", "snntorch", "norse")}}
    args.out.with_suffix(".json").write_text(json.dumps({"rows": rows, "checks": raw, "env": env}, indent=1))
    args.out.write_text(_markdown(rows, env, sys.argv))
    print(args.out)


def _version(pkg: str) -> str:
    try:
        return version(pkg)
    except Exception:
        return "not installed"


def _markdown(rows: list[dict], env: dict, argv: list[str]) -> str:
    lines = [
        "| student | pool | reader | images | same prediction as eval | top-1 eval / reader | layers with equal "
        "spikes | spikes eval / reader | = eval's per-layer spikes/img | = BN-folded enofctl, every layer | "
        "max abs logit diff | reader s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["error"] is not None:
            lines.append(f"| {r['student']} | {r['pool']} | {r['reader']} | {r['samples']} | failed: "
                         f"{r['error'][:140]} | | | | | | | {r['seconds']:.1f} |")
            continue
        lines.append(
            f"| {r['student']} | {r['pool']} | {r['reader']} | {r['samples']} | {100 * r['agreement']:.2f} % | "
            f"{100 * r['eval_top1']:.2f} / {100 * r['reader_top1']:.2f} % | {r['layers_equal']}/{r['layers']} | "
            f"{r['spikes_eval']:,.0f} / {r['spikes_reader']:,} | {'yes' if r['eval_per_layer_equal'] else 'NO'} | "
            f"{'yes' if r['folded_equal'] else 'NO'} | {r['max_logit_diff']:.1e} | {r['seconds']:.1f} |")
    versions = ", ".join(f"{k} {v}" for k, v in env.items())
    return "\n".join([f"Command: `{' '.join(['python', *argv])}`", "", f"Versions: {versions}.", "", *lines, ""])


if __name__ == "__main__":
    main()
