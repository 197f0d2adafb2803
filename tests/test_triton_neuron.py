"""The Triton neuron kernel against the reference step (``neuron_step`` through ``neuron_multistep``) and the
PyTorch fast path, on the CPU through Triton's interpreter: spikes identical, gradients equal up to rounding.

``TRITON_INTERPRET=1`` has to be set before Triton is first imported (Triton's own library functions are
decorated then), and the pytest process may have imported it already. So the kernel cases run in one child
process started with that variable (and ``ENOFCTL_TRITON_NEURON=1``), which runs this file's ``_worker`` and
reports each case; the tests here read its report. Nothing in this process's environment changes, except
for the fallback tests' own ``monkeypatch``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton", reason="Triton is not installed: the kernel has nothing to run on")

from enofctl.schema import NeuronSpec  # noqa: E402
from enofctl.spiking import neuron_multistep  # noqa: E402
from enofctl.spiking.neuron import (  # noqa: E402
    SpikingNeuron,
    _NeuronSequence,
    _triton_sequence,
    neuron_sequence,
    per_channel,
)

_MODULE = "enofctl.spiking.triton_neuron"
MAIN_CASES = [(reset, sg, v_init, repeat) for reset in ("hard", "soft") for sg in ("triangle", "sigmoid")
              for v_init in (0.0, 0.5) for repeat in (False, True)]
MORE_CASES = [(kind, sg) for kind in ("if", "lif") for sg in ("rect", "atan", "tanh")]


def _run(fn, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_()
    spk = fn(x)
    (spk * w).sum().backward()
    return spk.detach(), x.grad


def _reference(spec: NeuronSpec, T: int, repeat: bool, v_th=None):
    def fn(x):
        x_seq = x.expand(T, *x.shape) if repeat else x.unflatten(0, (T, -1))  # [T, B, ...]
        return neuron_multistep(x_seq, spec, v_th=v_th).flatten(0, 1)
    return fn


def _inputs(T: int, B: int, repeat: bool, shape=(3, 5), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B if repeat else T * B, *shape, generator=g) * 0.8 + 0.4
    return x, torch.randn(T * B, *shape, generator=g)


def _case_main(tn, reset, surrogate, v_init, repeat) -> None:
    spec = NeuronSpec(kind="lif", decay=0.5, v_th=0.5, reset=reset, surrogate=surrogate, v_init=v_init)
    T, B = 4, 2
    x, w = _inputs(T, B, repeat)
    assert _triton_sequence(x, spec.v_th, surrogate) is tn.TritonNeuronSequence
    s_ref, g_ref = _run(_reference(spec, T, repeat), x, w)
    s_new, g_new = _run(lambda z: neuron_sequence(z, spec, T, repeat=repeat), x, w)
    torch.testing.assert_close(s_new, s_ref, rtol=0, atol=0)
    torch.testing.assert_close(g_new, g_ref, rtol=2e-6, atol=2e-6)
    with torch.no_grad():  # inference keeps nothing for backward
        torch.testing.assert_close(neuron_sequence(x, spec, T, repeat=repeat), s_ref, rtol=0, atol=0)
    # the PyTorch fast path, asked for directly
    args = (T, repeat, False, spec.decay, spec.v_th, reset == "hard", v_init, surrogate, spec.surrogate_alpha())
    s_fast, g_fast = _run(lambda z: _NeuronSequence.apply(z, *args), x, w)
    torch.testing.assert_close(s_new, s_fast, rtol=0, atol=0)
    torch.testing.assert_close(g_new, g_fast, rtol=2e-6, atol=2e-6)


def _case_more(tn, kind, surrogate) -> None:
    assert _triton_sequence(torch.ones(2, 2), 1.0, surrogate) is tn.TritonNeuronSequence
    spec = NeuronSpec(kind=kind, decay=0.25, v_th=1.0, reset="soft", surrogate=surrogate)
    x, w = _inputs(3, 3, False, seed=1)
    s_ref, g_ref = _run(_reference(spec, 3, False), x, w)
    s_new, g_new = _run(lambda z: neuron_sequence(z, spec, 3), x, w)
    torch.testing.assert_close(s_new, s_ref, rtol=0, atol=0)
    torch.testing.assert_close(g_new, g_ref, rtol=2e-6, atol=2e-6)


def _case_layer_threshold(tn) -> None:
    """scaling="threshold" (one float per layer, the rescaled surrogate) runs in the kernel, and a
    channels-last input keeps its layout."""
    spec = NeuronSpec(kind="lif", decay=0.5, v_th=1.0, reset="hard", surrogate="sigmoid", v_init=0.5)
    T, B = 2, 2
    x, w = _inputs(T, B, False, shape=(3, 2, 2), seed=2)
    x = x.contiguous(memory_format=torch.channels_last)
    assert _triton_sequence(x, 0.7, spec.surrogate) is tn.TritonNeuronSequence
    s_ref, g_ref = _run(_reference(spec, T, False, v_th=0.7), x, w)
    s_new, g_new = _run(lambda z: neuron_sequence(z, spec, T, v_th=0.7), x, w)
    assert s_new.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(s_new, s_ref, rtol=0, atol=0)
    torch.testing.assert_close(g_new, g_ref, rtol=2e-6, atol=2e-6)


def _case_blocks(tn, T) -> None:
    """Several programs, the last one partly masked (N = 600 neurons a step, blocks of 256); T = 1 too."""
    spec = NeuronSpec(kind="lif", decay=0.75, v_th=0.5, reset="hard", surrogate="atan", v_init=0.5)
    for repeat in (False, True):
        x, w = _inputs(T, 2, repeat, shape=(3, 100), seed=3)
        s_ref, g_ref = _run(_reference(spec, T, repeat), x, w)
        s_new, g_new = _run(lambda z, r=repeat: neuron_sequence(z, spec, T, repeat=r), x, w)
        torch.testing.assert_close(s_new, s_ref, rtol=0, atol=0)
        torch.testing.assert_close(g_new, g_ref, rtol=2e-6, atol=2e-6)


CHANNEL_CASES = [  # (kind, reset, surrogate, v_init, repeat, T): every surrogate, both kinds and resets, T = 1
    ("lif", "hard", "rect", 0.0, False, 4), ("lif", "soft", "triangle", 0.5, True, 4),
    ("if", "soft", "sigmoid", 0.0, False, 3), ("if", "hard", "atan", 0.5, True, 1),
    ("lif", "hard", "tanh", 0.5, False, 1), ("lif", "soft", "atan", 0.0, True, 3)]
LAYOUTS = ("chw", "channels_last", "c")  # [C, H, W] rows, the same stored channels-last, [C] rows
DTYPE_CASES = [(dtype, th) for dtype in ("bfloat16", "float16") for th in ("layer", "channel")]


def _channel_inputs(layout: str, T: int, B: int, repeat: bool, seed: int):
    """Rows of 4 channels over several blocks of 256 (N = B * 400 or B * 300) and one threshold per channel."""
    shape = (4, 300) if layout == "c" else (4, 10, 10)
    x, w = _inputs(T, B, repeat, shape=(shape[0] * shape[1], *shape[2:]) if layout == "c" else shape, seed=seed)
    if layout == "c":
        x, w = x.reshape(x.shape[0], 1200), w.reshape(w.shape[0], 1200)  # C = 1200 channels, inner 1
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    C = x.shape[1]
    th = torch.linspace(0.3, 1.2, C)[torch.randperm(C, generator=torch.Generator().manual_seed(seed))]
    return x, w, per_channel(th, x)


def _case_channel(tn, kind, reset, surrogate, v_init, repeat, T, layout) -> None:
    """scaling="channel": one threshold per channel, the rescaled surrogate; against the step and the
    PyTorch path (no gradient reaches the thresholds on either: a buffer)."""
    spec = NeuronSpec(kind=kind, decay=0.75, v_th=0.5, reset=reset, surrogate=surrogate, v_init=v_init)
    x, w, th = _channel_inputs(layout, T, 2, repeat, seed=len(surrogate) + T)
    assert _triton_sequence(x, th, surrogate) is tn.TritonNeuronSequence
    s_ref, g_ref = _run(_reference(spec, T, repeat, v_th=th), x, w)
    s_new, g_new = _run(lambda z: neuron_sequence(z, spec, T, repeat=repeat, v_th=th), x, w)
    assert s_new.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
    assert 0.05 < s_ref.mean() < 0.95
    torch.testing.assert_close(s_new, s_ref, rtol=0, atol=0)
    torch.testing.assert_close(g_new, g_ref, rtol=2e-6, atol=2e-6)
    with torch.no_grad():
        torch.testing.assert_close(neuron_sequence(x, spec, T, repeat=repeat, v_th=th), s_ref, rtol=0, atol=0)
    decay = 1.0 if kind == "if" else spec.decay
    args = (T, repeat, False, decay, th, reset == "hard", v_init, surrogate, spec.surrogate_alpha(), spec.v_th / th)
    s_fast, g_fast = _run(lambda z: _NeuronSequence.apply(z, *args), x, w)
    torch.testing.assert_close(s_new, s_fast, rtol=0, atol=0)
    torch.testing.assert_close(g_new, g_fast, rtol=2e-6, atol=2e-6)


def _case_dtype(tn, dtype, th_kind) -> None:
    """bf16/fp16 (what autocast gives): the membrane in float32, so spikes are those of the float32 path on
    the same (upcast) input and thresholds, gradients that path's rounded to the dtype (the interpreter
    truncates to bf16 where a GPU rounds to nearest: within one unit in the last place either way)."""
    dt = getattr(torch, dtype)
    spec = NeuronSpec(kind="lif", decay=0.5, v_th=0.5, reset="soft", surrogate="sigmoid", v_init=0.5)
    ulp = 2.0 ** (-7 if dt == torch.bfloat16 else -10)
    for repeat, T in ((False, 3), (True, 2)):
        x, w, th = _channel_inputs("chw", T, 2, repeat, seed=5)
        th = th if th_kind == "channel" else 0.7
        x, w = x.to(dt), w.to(dt)
        assert _triton_sequence(x, th, spec.surrogate) is tn.TritonNeuronSequence
        s_ref, g_ref = _run(_reference(spec, T, repeat, v_th=th), x.float(), w.float())
        s_new, g_new = _run(lambda z, r=repeat, n=T, t=th: neuron_sequence(z, spec, n, repeat=r, v_th=t), x, w)
        assert s_new.dtype == g_new.dtype == dt
        torch.testing.assert_close(s_new.float(), s_ref, rtol=0, atol=0)
        torch.testing.assert_close(g_new.float(), g_ref, rtol=1.01 * ulp, atol=1e-5)
    # the default student's neuron (scaling="channel": float32 buffers) on a bf16/fp16 input, in the kernel
    layer = SpikingNeuron(spec, T=2, scaling="channel", channels=4)
    layer.v_th.copy_(torch.tensor([0.3, 0.6, 0.9, 1.2]))
    layer.amp.copy_(torch.tensor([1.0, 2.0, 0.5, 3.0]))
    x = _inputs(2, 2, False, shape=(4, 3, 3), seed=6)[0].to(dt).requires_grad_()
    out = layer(x)
    assert "TritonNeuronSequence" in out.grad_fn.next_functions[0][0].name()
    ref = layer.float()(x.detach().float())
    torch.testing.assert_close(out.float(), ref.to(dt).float(), rtol=0, atol=0)


def _worker() -> None:
    """In the child process: run every kernel case, print {case: "ok" or the failure} as JSON."""
    import importlib

    tn = importlib.import_module(_MODULE)
    cases = {f"main-{c}": (_case_main, c) for c in MAIN_CASES}
    cases |= {f"more-{c}": (_case_more, c) for c in MORE_CASES}
    cases["layer-threshold"] = (_case_layer_threshold, ())
    cases |= {f"blocks-{T}": (_case_blocks, (T,)) for T in (1, 3)}
    cases |= {f"channel-{c}": (_case_channel, (*c, LAYOUTS[i % 3])) for i, c in enumerate(CHANNEL_CASES)}
    cases |= {f"dtype-{c}": (_case_dtype, c) for c in DTYPE_CASES}
    report = {}
    for name, (fn, args) in cases.items():
        try:
            fn(tn, *args)
            report[name] = "ok"
        except Exception as e:  # noqa: BLE001 - reported to the test that reads it
            report[name] = f"{type(e).__name__}: {e}"
    print("REPORT " + json.dumps(report))


@pytest.fixture(scope="module")
def report() -> dict[str, str]:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TRITON_INTERPRET": "1", "ENOFCTL_TRITON_NEURON": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    code = f"import runpy; runpy.run_path({str(Path(__file__).resolve())!r})['_worker']()"
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True,
                          timeout=300)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("REPORT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("REPORT "))


@pytest.mark.parametrize("case", MAIN_CASES, ids=lambda c: "-".join(map(str, c)))
def test_kernel_equals_the_step_and_the_fast_path(report, case) -> None:
    """hard/soft reset x two surrogates x v_init 0/0.5 x repeated input on/off."""
    assert report[f"main-{case}"] == "ok"


@pytest.mark.parametrize("case", MORE_CASES, ids=lambda c: "-".join(c))
def test_every_surrogate_and_kind(report, case) -> None:
    assert report[f"more-{case}"] == "ok"


def test_a_layer_threshold_and_channels_last(report) -> None:
    assert report["layer-threshold"] == "ok"


@pytest.mark.parametrize("T", [1, 3])
def test_several_blocks_and_one_step(report, T) -> None:
    assert report[f"blocks-{T}"] == "ok"


@pytest.mark.parametrize("case", CHANNEL_CASES, ids=lambda c: "-".join(map(str, c)))
def test_per_channel_thresholds_over_several_blocks(report, case) -> None:
    """Each case in one layout: [C, H, W] rows, channels-last, [C] rows."""
    assert report[f"channel-{case}"] == "ok"


@pytest.mark.parametrize("case", DTYPE_CASES, ids=lambda c: "-".join(c))
def test_bf16_and_fp16_inputs_compute_in_float32(report, case) -> None:
    assert report[f"dtype-{case}"] == "ok"


@pytest.fixture
def tn(monkeypatch):
    """The module, imported in this process (its kernels are not run here), dropped again afterwards."""
    import importlib

    monkeypatch.setenv("ENOFCTL_TRITON_NEURON", "1")
    sys.modules.pop(_MODULE, None)
    yield importlib.import_module(_MODULE)
    sys.modules.pop(_MODULE, None)


def test_what_the_kernel_does_not_cover_runs_the_pytorch_path(tn, monkeypatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # (only read by supports() here: nothing is launched)
    spec = NeuronSpec(kind="lif", decay=0.5, v_th=0.5, reset="soft", surrogate="triangle")
    x, _ = _inputs(2, 2, False)
    th = torch.linspace(0.3, 0.9, 5)  # one threshold per last-dimension element, not per channel
    assert _triton_sequence(x, th, spec.surrogate) is None
    assert _triton_sequence(x, th.expand(3, 5), spec.surrogate) is None
    per_c = per_channel(torch.tensor([0.3, 0.5, 0.9]), x)  # scaling="channel": the kernel's
    assert _triton_sequence(x, per_c, spec.surrogate) is tn.TritonNeuronSequence
    assert _triton_sequence(x.double(), spec.v_th, spec.surrogate) is None
    assert _triton_sequence(x.transpose(1, 2), spec.v_th, spec.surrogate) is None  # rows not dense
    s = neuron_sequence(x, spec, 2, v_th=th)
    torch.testing.assert_close(s, _reference(spec, 2, False, v_th=th)(x), rtol=0, atol=0)
    monkeypatch.setenv("ENOFCTL_TRITON_NEURON", "0")
    assert _triton_sequence(x, spec.v_th, spec.surrogate) is None
    monkeypatch.setenv("ENOFCTL_TRITON_NEURON", "auto")  # CPU tensors: the PyTorch path
    assert _triton_sequence(x, spec.v_th, spec.surrogate) is None


def test_forced_on_cpu_without_the_interpreter_warns_once_and_falls_back(tn, monkeypatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(tn, "_warned", False)
    x = torch.ones(4, 3)
    with pytest.warns(UserWarning, match="TRITON_INTERPRET"):
        assert _triton_sequence(x, 0.5, "triangle") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _triton_sequence(x, 0.5, "triangle") is None


def test_forced_without_triton_warns_once_and_falls_back(tn, monkeypatch) -> None:
    monkeypatch.setattr(tn, "available", False)
    monkeypatch.setattr(tn, "_warned", False)
    monkeypatch.setenv("ENOFCTL_TRITON_NEURON", "1")
    x = torch.ones(4, 3)
    with pytest.warns(UserWarning, match="does not import"):
        assert not tn.supports(x, 0.5, "triangle")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not tn.supports(x, 0.5, "triangle")
    monkeypatch.setenv("ENOFCTL_TRITON_NEURON", "auto")  # not asked for: silent
    monkeypatch.setattr(tn, "_warned", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not tn.supports(x, 0.5, "triangle")
