"""enofctl's counts against NeuroBench's own (extra `neurobench`), layer by layer, and `eval --neurobench`.

The agreement tests skip when NeuroBench does not import; scripts/test.sh installs the extra, so CI runs them.
The missing-extra test runs everywhere.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from clihelp import TINY, assert_one_error_line, ok, run

from enofctl import neurobench_adapter as nba
from enofctl.data import DATASETS, TensorSplit
from enofctl.ops import OpsMeter
from enofctl.schema import ModelSpec, NeuronSpec, SpikingSpec
from enofctl.spiking import SpikingNet, SpikingNeuron, make_spiking
from enofctl.stages.common import batches_on
from enofctl.stages.evaluate import EvalConfig, measure

needs_neurobench = pytest.mark.skipif(
    importlib.util.find_spec("neurobench") is None,
    reason="neurobench is not installed (pip install 'enofctl[neurobench]'; scripts/test.sh installs it)")

CPU = torch.device("cpu")
SPEC = ModelSpec(name="resnet20", num_classes=10, in_chans=3, input_size=(3, 16, 16), mean=(0.5,), std=(0.25,))


def _model(kind: str, teacher: torch.nn.Module) -> torch.nn.Module:
    if kind == "teacher":
        return teacher
    # v_th 0.1: the tiny untrained net fires often, so every layer sees a mix of zeros and spikes
    spec = SpikingSpec(T=2, repact=kind == "repact", neuron=NeuronSpec(v_th=0.1))
    return make_spiking(teacher, spec, SPEC.input_size).eval()


def _split(n: int = 6) -> TensorSplit:
    return TensorSplit(torch.rand(n, *SPEC.input_size), torch.randint(0, 10, (n,)), DATASETS["synthetic"])


@needs_neurobench
@pytest.mark.parametrize("kind", ["teacher", "repact", "no-repact"])
def test_totals_equal_neurobench(kind: str, tiny_resnet20) -> None:
    model = _model(kind, tiny_resnet20[0])
    split = _split()
    run_ = measure(model, split, CPU, SPEC, EvalConfig(batch_size=4, speed_batches=0))
    nb = nba.benchmark(model, lambda: batches_on(split, CPU, SPEC.mean, SPEC.std, batch_size=4), 6, 2)
    assert nb.error is None, nb.error
    assert run_.connection_sparsity == 0  # so NeuroBench's zero-weight skipping changes nothing (ops docstring)
    assert nb.effective_acs == run_.sops
    assert nb.effective_macs == run_.macs_effective
    assert nb.dense == run_.synapses
    assert nb.footprint_bytes == run_.footprint_bytes and nb.parameter_count == run_.parameters
    assert round(nb.classification_accuracy * 6) == round(run_.top1 * 6)  # NeuroBench averages in float32
    assert nb.activation_sparsity == pytest.approx(run_.activation_sparsity_all, abs=1e-12)
    assert set(nb.activation_sparsity_by_layer) == set(run_.activation_sparsity_by_layer)
    for name, s in run_.activation_sparsity_by_layer.items():
        assert nb.activation_sparsity_by_layer[name] == pytest.approx(s, abs=1e-12), name
    if kind == "teacher":
        assert run_.sops == 0 and run_.macs_effective > 0
    else:
        assert run_.sops > 0 and run_.macs > run_.macs_effective > 0  # dense counts padding and zero inputs
        # 1 - mean firing rate over the neurons; RepAct's ReLU joins the second figure only
        assert run_.activation_sparsity == pytest.approx(1 - run_.mean_firing_rate)
        assert (run_.activation_sparsity != run_.activation_sparsity_all) == (kind == "repact")


@needs_neurobench
@pytest.mark.parametrize("kind", ["teacher", "repact", "no-repact"])
def test_each_layer_equals_neurobench(kind: str, tiny_resnet20) -> None:
    """Per layer: NeuroBench's own single_layer_MACs on the inputs its hooks recorded (its effective count, its
    spike test, its dense count) against OpsMeter's row for the same layer on the same batch."""
    from neurobench.metrics.utils.layers import single_layer_MACs

    model = _model(kind, tiny_resnet20[0])
    root = model.body if isinstance(model, SpikingNet) else model
    names = {id(m): n for n, m in root.named_modules()}
    x = next(iter(batches_on(_split(4), CPU, SPEC.mean, SPEC.std, batch_size=4)))[0]
    nb_model = nba._torch_model(nba._Logits(model), root)
    nb_model.register_hooks()
    meter = OpsMeter(model, force_analog=kind == "teacher")  # (an ANN multiplies in every layer); it runs a
    theirs: dict[str, dict[str, int]] = {}  # SpikingNet's first layers at every step, as the adapter does
    try:
        with torch.no_grad():
            nba._Logits(model)(x)
        meter.close()  # before NeuroBench counts: it runs deep copies of each layer, our hooks included
        for hook in nb_model.connection_hooks:
            t = theirs.setdefault(names[id(hook.layer)], {"acs": 0, "macs": 0, "dense": 0})
            for inp in hook.inputs:
                eff, spiking = single_layer_MACs(inp[0], hook.layer)
                dense, _ = single_layer_MACs(inp[0], hook.layer, total=True)
                t["acs" if spiking else "macs"] += eff
                t["dense"] += dense
    finally:
        meter.close()
        nb_model.cleanup_hooks()
    ours = {r.name: r for r in meter.rows(samples=1)}
    assert set(theirs) == set(ours)
    for name, row in ours.items():
        t = theirs[name]
        assert (row.sops_per_sample, row.macs_effective_per_sample, row.synapses_per_sample) == \
            (t["acs"], t["macs"], t["dense"]), name
        if kind != "teacher":
            assert (row.input_kind == "spikes") == (t["acs"] > 0 or t["macs"] == 0), name
    assert any(t["acs"] for t in theirs.values()) == (kind != "teacher")


@needs_neurobench
def test_amplitude_scaled_spikes_are_refused_with_the_reason(tiny_resnet20) -> None:
    teacher, input_size = tiny_resnet20
    model = make_spiking(teacher, SpikingSpec(T=2, scaling="channel"), input_size).eval()
    first = next(m for m in model.modules() if isinstance(m, SpikingNeuron))
    first.amp[0] = 0.5
    nb = nba.benchmark(model, lambda: iter(()), 0, 0)
    assert nb.error is not None and "amplitude != 1" in nb.error and "scaling 'channel'" in nb.error
    assert nb.effective_acs is None


# ---------------------------------------------------------------------------------------------------------
# the command line


@pytest.fixture(scope="module")
def arts(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("nb")
    t, s = d / "t.safetensors", d / "s.safetensors"
    ok("teacher", "train", "--dataset", "synthetic", *TINY, "--limit-train", "64", "--out", t)
    ok("convert", t, "--T", "2", "--no-calibrate", "--out", s)  # binary 0/1 spikes (scaling "none")
    return t, s


def test_missing_extra_is_one_line_and_writes_nothing(arts, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "neurobench", None)  # import neurobench -> ImportError
    folder = tmp_path / "rep"
    code, out, err = run("eval", arts[1], "--neurobench", "--report", folder, "--limit", "8")
    assert_one_error_line(code, out, err, 1, "pip install 'enofctl[neurobench]'")
    assert not folder.exists()


@needs_neurobench
def test_eval_neurobench_report_and_json(arts, tmp_path: Path) -> None:
    folder = tmp_path / "rep"
    out = ok("eval", *arts, "--neurobench", "--report", folder, "--limit", "8", "--speed-batches", "0", "--json")
    results = json.loads(out)["results"]
    for r in results:
        (run_,) = r["runs"]
        nb = run_["neurobench"]
        assert nb["error"] is None and nb["version"].startswith("2.")
        assert nb["effective_acs"] == run_["sops"] and nb["effective_macs"] == run_["macs_effective"]
        assert nb["dense"] == run_["synapses"] and nb["footprint_bytes"] == run_["footprint_bytes"]
    assert results[1]["runs"][0]["sops"] > 0
    report = json.loads((folder / "report.json").read_text())
    assert report["schema_version"] == 2
    md = (folder / "report.md").read_text()
    assert "## NeuroBench 2." in md and "| yes |" in md and "Paste-ready summary" in md


@needs_neurobench
def test_neurobench_failure_is_one_line_and_the_report_is_written(arts, tmp_path: Path, monkeypatch) -> None:
    from neurobench.benchmarks import Benchmark

    def boom(*a, **k):
        raise RuntimeError("no such layer\nsecond line")

    monkeypatch.setattr(Benchmark, "run", boom)
    folder = tmp_path / "rep"
    code, out, err = run("eval", arts[1], "--neurobench", "--report", folder, "--limit", "8", "--speed-batches", "0")
    assert code == 0, err
    lines = [line for line in err.splitlines() if "NeuroBench" in line]
    assert lines == [f"NeuroBench could not measure {arts[1].name} at T=2: NeuroBench failed: no such layer"]
    md = (folder / "report.md").read_text()
    assert "not measured: NeuroBench failed: no such layer" in md and "Per-layer activity" in md
