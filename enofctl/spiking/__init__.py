"""Spiking building blocks: neuron dynamics and surrogate gradients, and the ANN -> SNN module swap.

``NeuronSpec``, ``SpikingSpec`` (defined in `enofctl.schema`) and ``SURROGATES`` (`enofctl.surrogates`) are
re-exported here as part of the library API."""

from enofctl.schema import NeuronSpec, SpikingSpec
from enofctl.spiking.convert import (
    SpikingNet,
    activation_order,
    ann_forward_with_feature,
    fold_frames,
    logits_of,
    make_spiking,
)
from enofctl.spiking.neuron import SpikingNeuron, neuron_multistep, neuron_step
from enofctl.surrogates import SURROGATES

__all__ = [
    "SURROGATES", "NeuronSpec", "SpikingNet", "SpikingNeuron", "SpikingSpec", "activation_order",
    "ann_forward_with_feature", "fold_frames", "logits_of", "make_spiking", "neuron_multistep", "neuron_step",
]
