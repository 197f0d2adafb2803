"""Stage 5: a student for neuromorphic hardware, as a NIR graph (`enofctl export`), and the check that other
simulators reading that file compute what enofctl computes (`verify_export`).

The mapping (BatchNorm folded, LIF/IF parameters for a stated ``dt``, pools, residual edges) and what is
refused are described in `enofctl.spiking.nir_export`; the readers in `enofctl.spiking.nir_readers`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from enofctl import __version__, artifacts
from enofctl.config.export import ExportConfig  # the config, defined without torch (re-exported)
from enofctl.errors import MissingDependencyError, UsageError
from enofctl.io import atomic_write
from enofctl.schema.export import ExportResult, LayerSpikes, ReaderCheck, VerifyResult  # (re-exported)
from enofctl.spiking.nir_export import fold_batchnorm, import_nir, to_nir

HEAD_SUFFIX = ".head.safetensors"


def head_path(out: str | Path) -> Path:
    """Where ``--split-head`` saves the head: ``s.nir`` -> ``s.head.safetensors``."""
    out = Path(out)
    return out.with_name(out.stem + HEAD_SUFFIX)


def _check_out(out: str | Path) -> Path:
    out = Path(out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; give a file path such as student.nir")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: directory {out.parent} does not exist")
    return out


def export(student: str | Path, cfg: ExportConfig, out: str | Path) -> ExportResult:
    """Write ``student`` (an artifact path) as a NIR graph at ``out`` (and its head beside it with
    ``split_head``). Everything is built and checked before anything is written; both files are written
    atomically, and a failure leaves neither."""
    out = _check_out(out)
    nir = import_nir()
    art = artifacts.load(student, expect="student")
    m = art.manifest
    net = art.build()
    ex = to_nir(net, tuple(m.model.input_size), dt=cfg.dt, sum_pool=cfg.sum_pool, split_head=cfg.split_head)
    head = head_path(out) if ex.head is not None else None
    ex.graph.metadata = {
        "producer": f"enofctl {__version__}",
        "enofctl.source": str(student),
        "enofctl.source_sha256": art.sha256,
        "enofctl.manifest": m.model_dump_json(),
        "enofctl.export": cfg.model_dump_json(),
        "dt": repr(cfg.dt),
        "T": str(m.spiking.T),
        "input": "the image normalized by mean/std (direct encoding), the same current at each of T steps",
        "mean": json.dumps(list(m.model.mean)),
        "std": json.dumps(list(m.model.std)),
        "readout": ("output: the body's current into the ReLU head, see head" if head is not None else
                    "logits: the mean over the T steps of the output"),
        "neurons": json.dumps(ex.neurons),
        **({"head": head.name} if head is not None else {}),
    }
    if head is not None:
        from safetensors.torch import save_file

        meta = {"enofctl.head": json.dumps({
            "ops": ["relu", "global_avg_pool", "mean_over_T", "linear"], "T": m.spiking.T,
            "source_sha256": art.sha256, "graph": out.name})}
        atomic_write(head, lambda tmp: save_file(ex.head, str(tmp), metadata=meta))
    try:
        atomic_write(out, lambda tmp: nir.write(tmp, ex.graph))
    except BaseException:
        if head is not None:
            head.unlink(missing_ok=True)
        raise
    return ExportResult(path=str(out), head=None if head is None else str(head), nodes=len(ex.graph.nodes),
                        neurons=len(ex.neurons), dt=cfg.dt, T=m.spiking.T)


# ----------------------------------------------------------------------------------------------------------
# verification: the file read back by other simulators against enofctl's own forward pass


@torch.no_grad()
def _reference(net, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, dict[str, int]]:
    """enofctl's logits and per-layer spike counts on ``x``, run as `eval` runs it (both meters attached)."""
    from enofctl.activity import ActivityMeter
    from enofctl.ops import OpsMeter

    net.eval()
    meter, ops = ActivityMeter(net), OpsMeter(net)
    try:
        logits = torch.cat([net(xb) for xb in x.split(batch_size)])
    finally:
        meter.close()
        ops.close()
    return logits, {k: int(v.sum().item()) for k, v in meter.counts.items()}


def verify_export(graph_path: str | Path, student: str | Path, readers: list[str], limit: int | None = None,
                  batch_size: int = 256, data_dir: str | None = None) -> VerifyResult:
    """Read ``graph_path`` with each reader, run it on the student's test split (the first ``limit``
    images) for the student's T steps, and compare predictions and per-layer spike counts with enofctl's."""
    import time

    from enofctl.data import load_dataset, normalize, recorded_image_size
    from enofctl.spiking.nir_readers import run_reader

    nir = import_nir()
    art = artifacts.load(student, expect="student")
    m = art.manifest
    graph = nir.read(str(graph_path))
    meta = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in (graph.metadata or {}).items()}
    if meta.get("enofctl.source_sha256") != art.sha256:
        raise UsageError(f"{graph_path} was not exported from {student} (its metadata names another source)")
    dt, neurons = float(meta["dt"]), json.loads(meta["neurons"])
    head = None
    if "head" in meta:
        from safetensors.torch import load_file

        head = load_file(str(Path(graph_path).with_name(meta["head"])))
    data = load_dataset(m.data.dataset, data_dir or m.data.data_dir,
                        image_size=recorded_image_size(m.data.dataset, m.model.input_size))
    xs, ys = zip(*data.test.batches(batch_size, limit=limit), strict=True)
    x, y = normalize(torch.cat(xs), m.model.mean, m.model.std), torch.cat(ys)
    net = art.build()
    T = net.T
    logits, ref = _reference(net, x, batch_size)
    _, ref_folded = _reference(fold_batchnorm(net), x, batch_size)
    pred = logits.argmax(1)
    checks = []
    for reader in readers:
        t0 = time.perf_counter()
        try:
            step = None if head is None else (lambda z: torch.relu(z).mean(dim=(-2, -1)))
            run = run_reader(reader, graph, x, T, dt, list(neurons), batch_size=batch_size, step=step)
        except MissingDependencyError:
            raise
        except Exception as e:  # a reader that cannot build or run the graph is a finding, not a crash
            checks.append(ReaderCheck(reader=reader, error=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}",
                                      seconds=time.perf_counter() - t0))
            continue
        out = run.outputs / T
        if head is not None:
            out = out @ head["weight"].T + head["bias"]
        layers = [LayerSpikes(name=neurons[k], node=k, enofctl=ref.get(neurons[k], -1),
                              folded=ref_folded.get(neurons[k], -1), reader=v) for k, v in run.spikes.items()]
        same = sum(layer.enofctl == layer.reader for layer in layers)
        checks.append(ReaderCheck(
            reader=reader, agreement=(out.argmax(1) == pred).double().mean().item(),
            top1=(out.argmax(1) == y).double().mean().item(), spikes_equal=same == len(layers) == len(ref),
            layers_equal=same, layers=layers,
            folded_spikes_equal=all(x.folded == x.reader for x in layers) and len(layers) == len(ref),
            max_logit_diff=(out - logits).abs().max().item(),
            seconds=time.perf_counter() - t0))
    return VerifyResult(graph=str(graph_path), student=str(student), samples=len(y), T=T, dt=dt,
                        top1=(pred == y).double().mean().item(), spikes=sum(ref.values()), readers=checks)
