"""enofctl's spiking student against the same network built on SpikingJelly, snnTorch and Norse.

    pip install -e ".[bench]"
    python benchmarks/peers.py [--width 1.0] [--B 32] [--T 4] [--steps 3] [--threads 2] [--peers spikingjelly,...]
    python benchmarks/peers.py --equality-only [...]      # part 1 only
    python benchmarks/peers.py --device cuda [...]        # on a GPU (peak memory: CUDA's allocator)

The network is train_step.py's student: ``resnet20`` at ``--width`` made spiking by ``make_spiking`` with the
default ``SpikingSpec`` (LIF, u = 0.25 v + x, spike when u > 0.5, hard reset to 0, triangle surrogate of width
1, time folded into the batch, RepAct). Each peer's network is a copy with the same weights in which every
enofctl ``SpikingNeuron`` is replaced by a thin adapter around the peer's own multi-step LIF neuron: it takes
``[T*B, ...]``, runs the neuron over T the way the peer's users do and returns ``[T*B, ...]`` spikes; the
input is repeated T times and the pooled features averaged over T before the classifier, as ``SpikingNet``
does. The peers' neurons, configured for the same recursion:

- SpikingJelly: ``LIFNode(step_mode="m", decay_input=False, tau=1 / (1 - decay), v_reset=0.0,
  detach_reset=False, surrogate PiecewiseQuadratic(alpha=1 / width))`` on a ``[T, B, ...]`` view (its CPU
  implementation; 2.0 has no ``backend`` argument), state reset after every call. H = V - V / tau + X is
  0.25 V + X up to rounding; it fires at H >= v_threshold where enofctl fires at u > v_th, so v_threshold is
  the float32 just above 0.5 (inputs of exactly 0.5 are common here: the stem's average-pooled spikes reach
  the first blocks through the residual path). Its surrogate is enofctl's triangle: forward and gradients
  match.
- snnTorch: ``Leaky(beta=decay, threshold, reset_mechanism="zero")`` with the triangle as a
  ``custom_surrogate``, stepped over T (it has no multi-step form with a reset). It resets one step late:
  step t first zeroes the membrane where the previous one crossed the threshold, then integrates and fires,
  and returns the membrane before reset; the spikes are the same. Its reset signal is detached, so its
  gradients are those of a detached reset (enofctl's is not).
- Norse: ``LIFBoxCell`` (a LIF without a synaptic current) lifted over T with ``Lift``, ``dt = 1``,
  ``tau_mem_inv = 1 - decay``: v += 0.75 (x - v) is 0.75 u, so ``v_th = 0.75 * 0.5``; reset to 0 commutes
  with the scale. Its triangle surrogate has width 1 in Norse's membrane, which is enofctl's triangle of
  width 1 / (1 - decay) = 4/3 in u (with ``alpha = 1``, exactly): the same forward, other gradients.

Part 1 (eval mode, no autograd, one random batch): each peer's logits against enofctl's (max |difference|)
and, per neuron layer, the fraction of spikes that differ; then one training forward/backward (CE) with the
largest relative difference of the parameter gradients. Part 2 (each in its own process, as train_step.py
measures): a training step (forward, CE, backward, SGD) and an inference step (no autograd), throughput and
extra peak RSS (on CUDA: the allocator's peak above the model's), as ratios to the ANN at batch B*T measured in
the same run. Prints markdown tables; a peer that is not installed here, or fails, gets a row that says so.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import subprocess
import sys
import time
from importlib import metadata

import torch
import torch.nn as nn
import torch.nn.functional as F
from train_step import _peak_mb  # benchmarks/ is on sys.path when this file runs as a script

PEERS = ("spikingjelly", "snntorch", "norse")
INPUT = (3, 32, 32)

# ----------------------------------------------------------------------------------------------------------
# one adapter per peer: [T*B, ...] currents in, [T*B, ...] spikes out


class PeerNeuron(nn.Module):
    """Base of the adapters. ``spec`` is the enofctl NeuronSpec the peer's neuron is configured to follow."""

    def __init__(self, spec, T: int):
        super().__init__()
        if (spec.kind, spec.reset, spec.surrogate, spec.v_init) != ("lif", "hard", "triangle", 0.0):
            raise ValueError(f"the peers are set up for a LIF with a hard reset to 0 and the triangle surrogate, "
                             f"not {spec!r}")
        if not 0.0 < spec.decay < 1.0:
            raise ValueError(f"the peers need a leak 0 < decay < 1, not {spec.decay}")
        self.T = T


class SpikingJellyLIF(PeerNeuron):
    def __init__(self, spec, T: int):
        super().__init__(spec, T)
        from spikingjelly.activation_based import neuron, surrogate

        # it fires at H >= v_threshold, enofctl at u > v_th: the next float32 up makes the two the same test
        # (u == v_th exactly is common here: an average-pooled spike map of 0.5 on a residual path)
        v_th = torch.nextafter(torch.tensor(spec.v_th), torch.tensor(float("inf"))).item()
        self.node = neuron.LIFNode(tau=1.0 / (1.0 - spec.decay), decay_input=False, v_threshold=v_th,
                                   v_reset=0.0, detach_reset=False, step_mode="m",
                                   surrogate_function=surrogate.PiecewiseQuadratic(alpha=1.0 / spec.surrogate_alpha()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spk = self.node(x.unflatten(0, (self.T, -1)))  # [T, B, ...]
        self.node.reset()  # what functional.reset_net does between batches
        return spk.flatten(0, 1)


class SnnTorchLeaky(PeerNeuron):
    def __init__(self, spec, T: int):
        super().__init__(spec, T)
        import snntorch
        from snntorch import surrogate

        a = spec.surrogate_alpha()

        def triangle(x: torch.Tensor, grad: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
            return grad * (a - x.abs()).clamp(min=0) / (a * a)

        self.lif = snntorch.Leaky(beta=spec.decay, threshold=spec.v_th, reset_mechanism="zero",
                                  spike_grad=surrogate.custom_surrogate(triangle))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mem = self.lif.reset_mem()
        out = []
        for x_t in x.unflatten(0, (self.T, -1)):
            spk, mem = self.lif(x_t, mem)
            out.append(spk)
        return torch.cat(out)


class NorseLIFBox(PeerNeuron):
    def __init__(self, spec, T: int):
        super().__init__(spec, T)
        from norse.torch import LIFBoxCell, LIFBoxParameters, Lift

        gain = 1.0 - spec.decay  # Norse's membrane is (1 - decay) * enofctl's u
        p = LIFBoxParameters(tau_mem_inv=torch.as_tensor(gain), v_leak=torch.as_tensor(0.0),
                             v_th=torch.as_tensor(gain * spec.v_th), v_reset=torch.as_tensor(0.0),
                             method="triangle", alpha=torch.as_tensor(1.0))
        self.lift = Lift(LIFBoxCell(p, dt=1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spk, _ = self.lift(x.unflatten(0, (self.T, -1)))  # ([T, B, ...], last state)
        return spk.flatten(0, 1)


ADAPTERS: dict[str, type[PeerNeuron]] = {"spikingjelly": SpikingJellyLIF, "snntorch": SnnTorchLeaky,
                                         "norse": NorseLIFBox}


class PeerNet(nn.Module):
    """A converted body run over T steps as ``SpikingNet`` runs it: the image at every step, time folded into
    the batch, the pooled features averaged over T, then the classifier. Logits ``[B, K]``."""

    def __init__(self, body: nn.Module, T: int):
        super().__init__()
        self.body, self.T = body, T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, T = x.shape[0], self.T
        x_seq = x.unsqueeze(0).expand(T, *x.shape).flatten(0, 1)  # [T*B, C, H, W]
        feat = self.body.forward_head(self.body.forward_features(x_seq), pre_logits=True)  # [T*B, F]
        return self.body.get_classifier()(feat.view(T, b, -1).mean(0))


def make_peer(snn: nn.Module, peer: str, copy_body: bool = True) -> PeerNet:
    """``snn`` (a SpikingNet) with every SpikingNeuron replaced by ``peer``'s neuron; the weights are shared
    unless ``copy_body``."""
    from enofctl.models.base import replace_module
    from enofctl.spiking import SpikingNeuron

    body = copy.deepcopy(snn.body) if copy_body else snn.body
    neurons = [(n, m) for n, m in body.named_modules() if isinstance(m, SpikingNeuron)]
    for name, m in neurons:
        replace_module(body, name, ADAPTERS[peer](m.spec, m.T))
    return PeerNet(body, snn.T)


def build(name: str, width: float, T: int, device: str = "cpu") -> nn.Module:
    """``ann``, ``enofctl`` or a peer on ``device``: seeded, so every process builds the same weights."""
    from enofctl.models import build_model
    from enofctl.schema import SpikingSpec
    from enofctl.spiking import make_spiking

    torch.manual_seed(0)
    ann = build_model("resnet20", 10, 3, {"width": width})
    if name == "ann":
        return ann.to(device)
    snn = make_spiking(ann, SpikingSpec(T=T), INPUT)
    return (snn if name == "enofctl" else make_peer(snn, name, copy_body=False)).to(device)


def version(name: str) -> str:
    return f"{name} {metadata.version('torch' if name == 'ann' else name)}"


# ----------------------------------------------------------------------------------------------------------
# part 1: are the networks the same?


def _run(net: nn.Module, kind: type, x: torch.Tensor, y: torch.Tensor):
    """Eval logits and every ``kind`` layer's spikes (no autograd), then the parameter gradients of one CE
    training backward."""
    spikes: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: spikes.__setitem__(n, o.detach()))
             for n, m in net.body.named_modules() if isinstance(m, kind)]
    net.eval()
    with torch.no_grad():
        logits = net(x)
    for h in hooks:
        h.remove()
    net.train()
    F.cross_entropy(net(x), y).backward()
    return logits, spikes, {n: p.grad for n, p in net.body.named_parameters()}


def equality(width: float, B: int, T: int, peers: list[str], device: str = "cpu") -> dict:
    """Logits, per-layer spikes (eval, no autograd) and parameter gradients (train, CE) against enofctl's; a
    peer that fails gets ``{"error": its first line}``."""
    from enofctl.spiking import SpikingNeuron

    snn = build("enofctl", width, T, device)
    nets = {p: make_peer(snn, p).to(device) for p in peers}
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(B, *INPUT, generator=gen).to(device)
    y = torch.randint(0, 10, (B,), generator=gen).to(device)

    ref_logits, ref_spikes, ref_grads = _run(snn, SpikingNeuron, x, y)
    layers = list(ref_spikes)
    out = {"layers": layers, "rate": {n: ref_spikes[n].mean().item() for n in layers}, "peers": {}}

    for peer, net in nets.items():
        try:
            logits, spikes, grads = _run(net, PeerNeuron, x, y)
        except Exception as e:  # a peer's own failure (e.g. on this device): its row says so
            out["peers"][peer] = {"error": _first_line(e)}
            continue
        grad_diff = max(((g - ref_grads[n]).abs().max() / ref_grads[n].abs().max().clamp(min=1e-30)).item()
                        for n, g in grads.items())
        differ = {n: (spikes[n] != ref_spikes[n]).float().mean().item() for n in layers}
        total = sum((spikes[n] != ref_spikes[n]).sum().item() for n in layers)
        out["peers"][peer] = {"max_abs_logit_diff": (logits - ref_logits).abs().max().item(),
                              "spikes_differ": differ, "spikes_differ_total": total,
                              "neurons_total": sum(ref_spikes[n].numel() for n in layers),
                              "grad_rel_diff": grad_diff}
    return out


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[-1][:160] if lines else ''}"


def equality_verdict(r: dict) -> str:
    if "error" in r:
        return f"failed ({r['error']})"
    if r["max_abs_logit_diff"] == 0 and r["spikes_differ_total"] == 0:
        return "identical"
    return (f"max abs logit diff {r['max_abs_logit_diff']:.1e}, {r['spikes_differ_total']} of "
            f"{r['neurons_total']} spikes differ")


# ----------------------------------------------------------------------------------------------------------
# part 2: cost, each measurement in its own process (train_step.py's procedure)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, images: int,
                  infer: bool) -> dict:
    """One warm-up and ``steps`` timed steps: train (forward, CE, backward, SGD) or inference (no autograd).
    Extra peak memory: on the CPU the peak RSS after the steps minus the peak with the model built; on CUDA the
    allocator's peak during the steps above what was allocated before them."""
    device = x.device.type
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    base = _peak_mb()

    def step():
        if infer:
            model.eval()
            with torch.inference_mode():
                model(x)
            return
        model.train()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    _sync(device)
    if device == "cuda":
        base = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    dt = (time.perf_counter() - t0) / steps
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else _peak_mb()
    return {"seconds_per_step": dt, "images_per_s": images / dt, "extra_peak_mb": peak - base}


def measure(name: str, mode: str, width: float, B: int, T: int, steps: int, threads: int,
            device: str = "cpu") -> dict:
    torch.set_num_threads(threads)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    model = build(name, width, T, device)
    batch = B * T if name == "ann" else B  # the ANN at B*T does the same convolution work for B images
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, *INPUT, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    return {"name": name, "mode": mode, **measure_model(model, x, y, steps, B, mode == "infer")}


def run_one(what: str, a) -> dict:
    """``--one what`` in a fresh process. The parent stays light (it only imports torch): a child inherits its
    parent's peak RSS through fork/exec, which would hide the child's own peak below it."""
    out = subprocess.run([sys.executable, __file__, "--one", what, "--width", str(a.width), "--B", str(a.B),
                          "--T", str(a.T), "--steps", str(a.steps), "--threads", str(a.threads), "--peers", a.peers,
                          "--device", a.device],
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{what} failed: {_first_line(RuntimeError(out.stderr[-2000:]))}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "nan"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--B", type=int, default=32)
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset of " + ", ".join(PEERS))
    p.add_argument("--equality-only", action="store_true", help="part 1 only: no cost measurements")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args()
    requested = a.peers.split(",") if a.peers else []
    unknown = set(requested) - set(PEERS)
    if unknown:
        p.error(f"unknown peers {sorted(unknown)}; choose from {', '.join(PEERS)}")
    peers = [q for q in PEERS if q in requested and importlib.util.find_spec(q) is not None]
    if a.one:
        if a.one == "equality":
            torch.set_num_threads(a.threads)
            print(json.dumps(equality(a.width, a.B, a.T, peers, a.device)))
        else:
            name, mode = a.one.split(":")
            print(json.dumps(measure(name, mode, a.width, a.B, a.T, a.steps, a.threads, a.device)))
        return
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device here")
    a.peers = ",".join(peers)
    where = torch.cuda.get_device_name() if a.device == "cuda" else f"CPU, {a.threads} threads"
    print(f"resnet20 width {a.width}, 32x32, B={a.B}, T={a.T}, {where}, torch {torch.__version__}, "
          f"{a.steps} timed steps")
    missing = [q for q in PEERS if q in requested and q not in peers]
    skipped = "not installed here: skipped (pip install -e '.[bench]')"

    eq = run_one("equality", a)
    print("\n## Forward equality (eval, no autograd) and gradients (train, CE) against enofctl\n")
    print("| peer | max abs logit diff | spikes that differ | max rel. grad diff |")
    print("|---|---|---|---|")
    for q in peers:
        r = eq["peers"][q]
        if "error" in r:
            print(f"| {version(q)} | {equality_verdict(r)} | - | - |")
            continue
        print(f"| {version(q)} | {r['max_abs_logit_diff']:.2e} | {r['spikes_differ_total']} of "
              f"{r['neurons_total']} | {r['grad_rel_diff']:.2e} |")
    for q in missing:
        print(f"| {q} | {skipped} | - | - |")
    peers = [q for q in peers if "error" not in eq["peers"][q]]
    print("\nFraction of spikes that differ per layer (enofctl's firing rate for scale):\n")
    print("| layer | enofctl rate | " + " | ".join(peers) + " |")
    print("|---|---|" + "---|" * len(peers))
    for n in eq["layers"]:
        print(f"| {n} | {eq['rate'][n]:.3f} | " + " | ".join(f"{eq['peers'][q]['spikes_differ'][n]:.1e}"
                                                          for q in peers) + " |")
    if a.equality_only:
        return

    rows, failed = {}, {}
    for name in ("ann", "enofctl", *peers):
        for mode in ("train", "infer"):
            try:
                rows[name, mode] = run_one(f"{name}:{mode}", a)
            except RuntimeError as e:
                if name in ("ann", "enofctl"):
                    raise
                failed[name] = str(e)
    print("\n## Cost (ratios to the ANN at batch B*T; throughput in images/s, an SNN image being T steps)\n")
    print("| framework | train s/step | x ANN | extra peak MB | x ANN | infer x ANN | forward equality |")
    print("|---|---|---|---|---|---|---|")
    ann_t, ann_i = rows["ann", "train"], rows["ann", "infer"]
    for name in ("ann", "enofctl", *peers):
        if name in failed:
            print(f"| {version(name)} | {failed[name]} | - | - | - | - | - |")
            continue
        t, i = rows[name, "train"], rows[name, "infer"]
        verdict = {"ann": "-", "enofctl": "reference"}.get(name) or equality_verdict(eq["peers"][name])
        label = f"ANN (torch {torch.__version__}, batch B*T)" if name == "ann" else version(name)
        print(f"| {label} | {t['seconds_per_step']:.3f} | {_ratio(t['images_per_s'], ann_t['images_per_s'])} | "
              f"{t['extra_peak_mb']:.0f} | {_ratio(t['extra_peak_mb'], ann_t['extra_peak_mb'])} | "
              f"{_ratio(i['images_per_s'], ann_i['images_per_s'])} | {verdict} |")
    for q in missing:
        print(f"| {q} | {skipped} | - | - | - | - | - |")


if __name__ == "__main__":
    main()
