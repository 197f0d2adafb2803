"""`enofctl export --format nir`: the graph it writes, the round trip through other simulators (snnTorch,
Norse, nirtorch) against enofctl's own forward pass, and what it refuses.

Tiny students on the `synthetic` data (1/8-width ResNet20, 1/16-width VGG7, T = 4, plain copies of a teacher
trained one epoch on 64 images); the readers run the first 32 test images. Everything that needs the NIR
packages skips, with the reason, when `pip install -e ".[nir]"` has not been run.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from clihelp import assert_one_error_line, listing, run, sha256

from enofctl.stages import TeacherConfig, convert, convert_config, train_teacher

HAS = {m: importlib.util.find_spec(m) is not None for m in ("nir", "nirtorch", "snntorch", "norse")}
needs_nir = pytest.mark.skipif(not HAS["nir"], reason="the nir package is not installed (pip install -e '.[nir]')")
READER_PACKAGES = {"snntorch": ("snntorch", "nirtorch"), "norse": ("norse", "nirtorch"), "nirtorch": ("nirtorch",)}


def needs_reader(reader: str):
    missing = [p for p in ("nir", *READER_PACKAGES[reader]) if not HAS[p]]
    return pytest.mark.skipif(bool(missing), reason=f"reader {reader} needs {', '.join(missing)} "
                              "(pip install -e '.[nir]')")


class Students:
    def __init__(self, root: Path):
        self.root = root
        self.teacher_r20 = root / "t_r20.safetensors"
        self.teacher_vgg = root / "t_vgg.safetensors"
        # bn_recompute=0: these teachers keep BatchNorm's moving averages. With the recomputed statistics of this
        # 64-image teacher one stem membrane sits within float rounding of the threshold, where folding BatchNorm
        # into the conv (as the NIR graph must) flips it (`folded_spikes_equal` still holds); the exact,
        # spike-for-spike comparison with enofctl's unfolded forward below needs a network without such ties.
        recipe = dict(dataset="synthetic", epochs=1, limit_train=64, limit_test=32, bn_recompute=0)
        train_teacher(TeacherConfig(model="resnet20", model_kwargs={"width": 0.125}, **recipe), self.teacher_r20)
        train_teacher(TeacherConfig(model="vgg7", model_kwargs={"width": 0.0625}, **recipe), self.teacher_vgg)
        self.r20 = self._student(self.teacher_r20, "s_r20")
        self.vgg = self._student(self.teacher_vgg, "s_vgg")

    def _student(self, teacher: Path, name: str, **kw) -> Path:
        out = self.root / f"{name}.safetensors"
        if not out.exists():
            fields = dict(T=4, calibrate=0, repact=False) | kw
            convert(teacher, convert_config(**fields), out)
        return out

    def variant(self, name: str, teacher: str = "r20", **kw) -> Path:
        return self._student(self.teacher_r20 if teacher == "r20" else self.teacher_vgg, name, **kw)


@pytest.fixture(scope="module")
def students(tmp_path_factory) -> Students:
    torch.manual_seed(0)
    return Students(tmp_path_factory.mktemp("nir"))


def _export(student: Path, out: Path, *args: str) -> None:
    code, stdout, err = run("export", student, "--out", out, *args)
    assert code == 0, err
    assert stdout == f"{out}\n"


# ----------------------------------------------------------------------------------------------------------
# the neuron mapping


@needs_nir
@pytest.mark.parametrize("decay", [0.0, 0.25, 0.5, 0.75])
def test_lif_tau_gives_the_decay_exactly_in_the_readers_arithmetic(decay: float) -> None:
    """snnTorch computes beta = 1 - dt/tau, Norse dt * (1/tau), both in float32: each must be exact."""
    from enofctl.spiking.nir_export import DEFAULT_DT, lif_tau

    tau, dt = lif_tau(DEFAULT_DT, decay), np.float32(DEFAULT_DT)
    assert tau.dtype == np.float32
    assert np.float32(1) - dt / tau == np.float32(decay)
    assert dt * (np.float32(1) / tau) == np.float32(1 - decay)


# ----------------------------------------------------------------------------------------------------------
# the graph


@needs_nir
def test_resnet_graph_folds_batchnorm_keeps_residuals_and_pools(students: Students, tmp_path: Path) -> None:
    import nir

    from enofctl import artifacts

    out = tmp_path / "s.nir"
    _export(students.r20, out)
    g = nir.read(str(out))
    kinds = [type(n).__name__ for n in g.nodes.values()]
    net = artifacts.load(students.r20).build()
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in net.body.modules())
    assert kinds.count("Conv2d") == convs
    assert kinds.count("LIF") == len(net.neurons())
    assert "AvgPool2d" in kinds and "Affine" in kinds and "Flatten" in kinds
    assert not [k for k in kinds if "Norm" in k]
    fan_in = {}
    for _src, dst in g.edges:
        fan_in[dst] = fan_in.get(dst, 0) + 1
    residual = [k for k, n in fan_in.items() if n == 2]
    assert len(residual) == 8  # each of the 8 BasicBlocks' act2 sums its conv2 and its shortcut
    assert all(type(g.nodes[k]).__name__ == "LIF" for k in residual)
    lif = next(n for n in g.nodes.values() if type(n).__name__ == "LIF")
    assert np.all(lif.v_reset == 0) and np.all(lif.v_leak == 0) and np.all(lif.r == 1)
    assert np.allclose(lif.v_threshold, 0.75 * 0.5)  # (1 - decay) * v_th for the default neuron


@needs_nir
def test_sum_pool_moves_the_average_into_the_next_layer(students: Students, tmp_path: Path) -> None:
    import nir

    avg, summed = tmp_path / "avg.nir", tmp_path / "sum.nir"
    _export(students.r20, avg)
    _export(students.r20, summed, "--sum-pool")
    a, s = nir.read(str(avg)), nir.read(str(summed))
    assert "AvgPool2d" not in [type(n).__name__ for n in s.nodes.values()]
    assert "SumPool2d" in [type(n).__name__ for n in s.nodes.values()]
    # the stem's 2x2 pool feeds block 1's conv1 (weights / 4) and its identity shortcut into act2: that
    # neuron's other input, conv2, is multiplied by 4 instead, and its threshold too
    assert np.array_equal(s.nodes["stages_0_0_conv1"].weight, a.nodes["stages_0_0_conv1"].weight / 4)
    assert np.array_equal(s.nodes["stages_0_0_conv2"].weight, a.nodes["stages_0_0_conv2"].weight * 4)
    assert np.array_equal(s.nodes["stages_0_0_act2"].v_threshold, a.nodes["stages_0_0_act2"].v_threshold * 4)


@needs_nir
def test_graph_metadata_carries_the_lineage(students: Students, tmp_path: Path) -> None:
    import nir

    from enofctl import artifacts

    out = tmp_path / "s.nir"
    _export(students.vgg, out, "--dt", "0.001")
    meta = {k: v.decode() if isinstance(v, bytes) else v for k, v in nir.read(str(out)).metadata.items()}
    assert meta["enofctl.source_sha256"] == sha256(students.vgg)
    manifest = json.loads(meta["enofctl.manifest"])
    assert manifest["parents"][0]["sha256"] == artifacts.load(students.vgg).manifest.parents[0].sha256
    assert float(meta["dt"]) == 0.001 and int(meta["T"]) == 4
    assert set(json.loads(meta["neurons"]).values()) == set(artifacts.load(students.vgg).build().neurons())


# ----------------------------------------------------------------------------------------------------------
# the round trip: other simulators against enofctl


ROUND_TRIPS = [("r20", False, "snntorch"), ("r20", False, "nirtorch"), ("r20", True, "norse"),
               ("r20", True, "snntorch"), ("vgg", False, "norse"), ("vgg", True, "nirtorch")]


@pytest.mark.parametrize("model,sum_pool,reader", [pytest.param(*p, marks=needs_reader(p[2])) for p in ROUND_TRIPS],
                         ids=[f"{m}-{'sum' if s else 'avg'}-{r}" for m, s, r in ROUND_TRIPS])
def test_readers_reproduce_enofctl_predictions_and_spikes(students: Students, tmp_path: Path, model: str,
                                                         sum_pool: bool, reader: str) -> None:
    from enofctl.stages.export import verify_export

    student = students.r20 if model == "r20" else students.vgg
    out = tmp_path / "s.nir"
    _export(student, out, *(["--sum-pool"] if sum_pool else []))
    res = verify_export(out, student, [reader], limit=32)
    (check,) = res.readers
    assert check.error is None, check.error
    assert res.spikes > 0
    assert check.agreement == 1.0
    assert check.spikes_equal, [(x.name, x.enofctl, x.reader) for x in check.layers if x.enofctl != x.reader]
    assert check.max_logit_diff < 1e-4


@needs_reader("nirtorch")
def test_the_check_notices_a_changed_threshold(students: Students, tmp_path: Path) -> None:
    """The comparison has teeth: one layer's threshold 1 % higher changes that layer's spike count."""
    import nir

    from enofctl.data import load_dataset, normalize
    from enofctl.spiking.nir_readers import run_reader
    from enofctl.stages.export import verify_export

    out = tmp_path / "s.nir"
    _export(students.r20, out)
    assert verify_export(out, students.r20, ["nirtorch"], limit=16).identical
    g = nir.read(str(out))
    g.nodes["stem_2"].v_threshold = g.nodes["stem_2"].v_threshold * np.float32(1.01)
    neurons = json.loads(g.metadata["neurons"].decode() if isinstance(g.metadata["neurons"], bytes) else
                         g.metadata["neurons"])
    data = load_dataset("synthetic")
    x = normalize(torch.cat([x for x, _ in data.test.batches(16, limit=16)]), (0.5,) * 3, (0.25,) * 3)
    before = run_reader("nirtorch", nir.read(str(out)), x, 4, 1e-4, list(neurons))
    after = run_reader("nirtorch", g, x, 4, 1e-4, list(neurons))
    assert after.spikes["stem_2"] < before.spikes["stem_2"]


@needs_reader("norse")
def test_integrate_and_fire_student_round_trips(students: Students, tmp_path: Path) -> None:
    """decay 1 (no leak) with a hard reset exports as nir.IF: v + I, read by Norse's IAFCell."""
    import nir

    from enofctl.schema import NeuronSpec
    from enofctl.stages.export import verify_export

    student = students.variant("s_if", teacher="vgg", neuron=NeuronSpec(decay=1.0))
    out = tmp_path / "s.nir"
    _export(student, out)
    assert {type(n).__name__ for n in nir.read(str(out)).nodes.values()} >= {"IF"}
    res = verify_export(out, student, ["norse"], limit=32)
    assert res.identical, res.readers[0]


@needs_reader("norse")
def test_calibrated_student_round_trips(students: Students, tmp_path: Path) -> None:
    """Per-channel thresholds become v_threshold arrays; per-channel amplitudes fold into the next layers,
    and where they reach a residual addition, into the other branch's conv and the neuron's thresholds."""
    import nir

    from enofctl.stages.export import verify_export

    # schema-3 style buffers; the reconstruction steps (not what is exported here) left out
    student = students.variant("s_cal", calibrate=1, batch_size=32, fold=False, reconstruct=0)
    out = tmp_path / "s.nir"
    _export(student, out)
    act2 = nir.read(str(out)).nodes["stages_0_0_act2"]
    assert len(np.unique(act2.v_threshold)) > 1
    res = verify_export(out, student, ["norse"], limit=32)
    assert res.identical, res.readers[0]


@pytest.mark.parametrize("reader", [pytest.param(r, marks=needs_reader(r)) for r in ("snntorch", "norse")])
def test_folded_calibrated_student_round_trips(students: Students, tmp_path: Path, reader: str) -> None:
    """A calibrated student folded into the weights (the default) has one threshold per layer and spikes of 1:
    snnTorch reads it (it refuses per-channel thresholds); an identity shortcut's per-channel factor is a
    diagonal 1x1 conv."""
    import nir

    from enofctl import artifacts
    from enofctl.stages.export import verify_export

    student = students.variant("s_fold", calibrate=1, batch_size=32, reconstruct=0)
    assert artifacts.load(student).manifest.spiking.shortcut_scales  # residual blocks with a shortcut factor
    out = tmp_path / "s.nir"
    _export(student, out)
    g = nir.read(str(out))
    for name in ("stages_0_0_act2", "stages_1_0_act1"):
        assert len(np.unique(g.nodes[name].v_threshold)) == 1
    w = g.nodes["stages_0_0_downsample"].weight[:, :, 0, 0]  # the shortcut factor: a diagonal 1x1 conv
    assert np.count_nonzero(w - np.diag(np.diag(w))) == 0 and np.all(np.diag(w) > 0)
    res = verify_export(out, student, [reader], limit=32)
    assert res.identical, res.readers[0]


@needs_reader("nirtorch")
def test_split_head_exports_the_body_and_saves_the_head(students: Students, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from enofctl.stages.export import verify_export

    student = students.variant("s_repact", repact=True)
    out = tmp_path / "s.nir"
    _export(student, out, "--split-head")
    head = tmp_path / "s.head.safetensors"
    assert set(load_file(str(head))) == {"weight", "bias"}
    res = verify_export(out, student, ["nirtorch"], limit=32)
    assert res.identical, res.readers[0]


# ----------------------------------------------------------------------------------------------------------
# bad input: one line, the exit code, nothing at --out


def _refused(tmp_path: Path, expect_code: int, *args: object, needles: tuple[str, ...] = ()) -> None:
    before = listing(tmp_path)
    code, out, err = run("export", *args)
    assert_one_error_line(code, out, err, expect_code, *needles)
    assert listing(tmp_path) == before


@needs_nir
def test_a_teacher_is_refused(students: Students, tmp_path: Path) -> None:
    _refused(tmp_path, 2, students.teacher_r20, "--out", tmp_path / "t.nir", needles=("student",))


@needs_nir
def test_a_soft_reset_student_is_refused(students: Students, tmp_path: Path) -> None:
    from enofctl.schema import NeuronSpec

    student = students.variant("s_soft", teacher="vgg", neuron=NeuronSpec(reset="soft"))
    _refused(tmp_path, 2, student, "--out", tmp_path / "s.nir", needles=("soft", "--reset hard"))


@needs_nir
def test_a_repact_student_needs_split_head(students: Students, tmp_path: Path) -> None:
    student = students.variant("s_repact", repact=True)
    _refused(tmp_path, 2, student, "--out", tmp_path / "s.nir", needles=("ReLU", "--split-head"))


@needs_nir
def test_split_head_without_a_head_is_refused(students: Students, tmp_path: Path) -> None:
    _refused(tmp_path, 2, students.vgg, "--out", tmp_path / "s.nir", "--split-head", needles=("--no-repact",))


def test_an_unknown_format_is_refused(students: Students, tmp_path: Path) -> None:
    _refused(tmp_path, 2, students.vgg, "--out", tmp_path / "s.onnx", "--format", "onnx", needles=("--format",))


def test_without_the_nir_package_export_says_what_to_install(students: Students, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nir", None)  # import nir raises ImportError
    _refused(tmp_path, 1, students.vgg, "--out", tmp_path / "s.nir", needles=("enofctl[nir]",))


@needs_nir
def test_a_failed_write_leaves_nothing(students: Students, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nir

    def broken(path, graph):
        Path(path).write_bytes(b"half")
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(nir, "write", broken)
    student = students.variant("s_repact", repact=True)
    _refused(tmp_path, 1, student, "--out", tmp_path / "s.nir", "--split-head", needles=("No space",))


@needs_reader("nirtorch")
def test_export_verify_prints_the_comparison(students: Students, tmp_path: Path) -> None:
    out = tmp_path / "s.nir"
    code, stdout, err = run("export", students.vgg, "--out", out, "--verify", "nirtorch", "--limit-test", "16",
                            "--json")
    assert code == 0, err
    res = json.loads(stdout)
    assert res["export"]["path"] == str(out)
    (check,) = res["verify"]["readers"]
    assert check["agreement"] == 1.0 and check["spikes_equal"]


@needs_reader("norse")
def test_export_verify_exits_3_when_a_reader_differs(students: Students, tmp_path: Path) -> None:
    """norse.torch.from_nir (nirtorch's deprecated executor) cannot run a residual graph: a finding, exit 3."""
    code, _, err = run("export", students.r20, "--out", tmp_path / "s.nir", "--verify", "norse-from_nir",
                       "--limit-test", "8", "--quiet")
    assert code == 3, err
    assert err.strip().splitlines()[-1].startswith("enofctl: error: ")
    assert (tmp_path / "s.nir").is_file()  # the export itself is sound; only the check failed


def test_export_verify_refuses_an_unknown_reader(students: Students, tmp_path: Path) -> None:
    _refused(tmp_path, 2, students.vgg, "--out", tmp_path / "s.nir", "--verify", "brian2", needles=("--verify",))


def test_folding_batchnorm_keeps_the_logits(students: Students) -> None:
    from enofctl import artifacts
    from enofctl.spiking.nir_export import fold_batchnorm

    net = artifacts.load(students.r20).build()
    folded = fold_batchnorm(net)
    assert not [m for m in folded.body.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [m for m in net.body.modules() if isinstance(m, torch.nn.BatchNorm2d)]  # the original is untouched
    x = torch.randn(8, 3, 16, 16)
    with torch.no_grad():  # the stem's conv + BatchNorm, and its folded conv
        assert torch.allclose(folded.body.stem[0](x), net.body.stem[1](net.body.stem[0](x)), atol=1e-5)
    assert isinstance(folded.body.stem[1], torch.nn.Identity)
