"""Spiking building blocks: neuron dynamics and surrogate gradients, and the ANN -> SNN module swap."""

from enofctl.spiking.convert import (
    SpikingNet,
    SpikingSpec,
    activation_order,
    ann_forward_with_feature,
    make_spiking,
)
from enofctl.spiking.neuron import SURROGATES, NeuronSpec, SpikingNeuron, neuron_multistep, neuron_step

__all__ = [
    "SURROGATES", "NeuronSpec", "SpikingNet", "SpikingNeuron", "SpikingSpec", "activation_order",
    "ann_forward_with_feature", "make_spiking", "neuron_multistep", "neuron_step",
]
