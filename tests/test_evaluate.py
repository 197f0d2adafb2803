"""Activity and energy figures of `measure` against hand-computed spike tensors."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from enofctl.data import DATASETS, TensorSplit
from enofctl.schema import ModelSpec, NeuronSpec, SpikingSpec
from enofctl.spiking import SpikingNet, SpikingNeuron
from enofctl.stages.evaluate import ActivityMeter, EvalConfig, measure


class _Body(nn.Module):
    """timm-contract toy: a neuron on the raw input, then a linear classifier on the mean over pixels."""

    def __init__(self, T: int):
        super().__init__()
        self.act = SpikingNeuron(NeuronSpec(kind="if", reset="soft", v_th=1.0), T)
        self.fc = nn.Linear(4, 2, bias=False)

    def forward_features(self, x):
        return self.act(x)  # [T*B, 4, 1, 1]

    def forward_head(self, x, pre_logits=False):
        x = x.flatten(1)
        return x if pre_logits else self.fc(x)

    def get_classifier(self):
        return self.fc

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def test_activity_matches_hand_count() -> None:
    T = 4
    # IF neuron, v_th = 1, soft reset, spike when u > v_th: a constant input x fires floor(x*T) times (x*T not whole)
    x = torch.tensor([[0.0, 0.3, 0.6, 1.2], [1.2, 1.2, 0.0, 0.6]]).view(2, 4, 1, 1)
    net = SpikingNet(_Body(T), SpikingSpec(T=T, neuron=NeuronSpec(kind="if", reset="soft", v_th=1.0), repact=False))
    meter = ActivityMeter(net)
    with torch.no_grad():
        net(x)
    meter.close()
    # hand count, per neuron over 2 samples x 4 steps: input 0 -> 0 spikes, 0.3 -> 1, 0.6 -> 2, 1.2 -> 4
    counts = torch.tensor([0 + 4, 1 + 4, 2 + 0, 4 + 2], dtype=torch.float64)
    assert torch.equal(meter.counts["act"], counts)
    (layer,) = meter.layers(samples=2, T=T)
    assert layer.neurons == 4
    assert layer.firing_rate == pytest.approx(counts.sum().item() / (4 * T * 2))
    assert layer.spikes_per_sample == pytest.approx(counts.sum().item() / 2)
    assert layer.silent == 0.0  # every neuron fired at least once over the two samples
    assert layer.saturated == 0.0  # none fired at all 8 (step, sample) slots


def test_silent_and_saturated_fractions() -> None:
    T = 2
    x = torch.tensor([[0.0, 0.0, 2.0, 2.0]]).view(1, 4, 1, 1)  # two never fire, two fire at every step
    net = SpikingNet(_Body(T), SpikingSpec(T=T, neuron=NeuronSpec(kind="if", reset="soft", v_th=1.0), repact=False))
    meter = ActivityMeter(net)
    with torch.no_grad():
        net(x)
    meter.close()
    (layer,) = meter.layers(samples=1, T=T)
    assert layer.silent == 0.5 and layer.saturated == 0.5
    assert layer.firing_rate == 0.5


def test_measure_counts_energy_from_spikes() -> None:
    T = 4
    info = DATASETS["synthetic"]
    x = torch.tensor([[0.0, 0.3, 0.6, 1.2]]).view(1, 4, 1, 1).repeat(3, 1, 1, 1)
    split = TensorSplit(x, torch.tensor([0, 1, 0]), info)
    body = _Body(T)
    net = SpikingNet(body, SpikingSpec(T=T, neuron=NeuronSpec(kind="if", reset="soft", v_th=1.0), repact=False))
    spec = ModelSpec(name="body", num_classes=2, in_chans=4, input_size=(4, 1, 1), mean=(0.0,), std=(1.0,))
    run = measure(net, split, torch.device("cpu"), spec, EvalConfig(batch_size=2, speed_batches=0))
    spikes = 0 + 1 + 2 + 4  # per sample over T steps
    assert run.samples == 3 and run.T == T
    assert run.spikes_per_sample == pytest.approx(spikes)
    # no RepAct: the classifier runs once per sample on the spikes averaged over T (rates 0, 1/4, 2/4, 4/4:
    # analog), so it is counted as what it computes: 4 x 2 dense MACs, of which 3 x 2 pair a non-zero input
    # (the first input never fires) with a non-zero weight. Before report schema 2 this counted the 7 spikes
    # x 2 outputs as SOPs at every step, a computation the student does not do.
    assert run.sops == 0 and run.macs == 8 and run.macs_effective == 6
    assert run.synapses == 8
    assert run.energy_pj == pytest.approx(8 * 4.6)
    assert run.energy_effective_pj == pytest.approx(6 * 4.6)
    assert run.ann_energy_pj == pytest.approx(8 * 4.6)
    assert run.repact_macs is None  # RepAct off
    # activation sparsity: 7 of the 4 x 4 neuron-steps fire
    assert run.activation_sparsity == pytest.approx(1 - 7 / 16)
    assert run.activation_sparsity_all == run.activation_sparsity  # no non-spiking activation
    assert run.activation_sparsity_by_layer == {"act": pytest.approx(1 - 7 / 16)}
    assert run.footprint_bytes == 8 * 4 and run.parameters == 8 and run.connection_sparsity == 0
