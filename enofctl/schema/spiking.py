"""What makes a student spiking: its neuron and how the network runs over time (``Manifest.spiking``).

The dynamics these specs configure are in `enofctl.spiking`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from enofctl.schema.base import Frozen
from enofctl.schema.surrogates import SURROGATE_ALPHAS, SurrogateName


class NeuronSpec(Frozen):
    """How a spiking neuron behaves. Defaults are the EnOF authors' code."""

    model_config = ConfigDict(allow_inf_nan=False)  # every number finite (--surrogate-alpha inf is refused)

    kind: Literal["lif", "if"] = "lif"
    decay: float = Field(0.25, ge=0.0, le=1.0, description="membrane leak factor per step (1 = no leak)")
    v_th: float = Field(0.5, gt=0.0, description="firing threshold")
    reset: Literal["hard", "soft"] = "hard"
    surrogate: SurrogateName = "triangle"
    alpha: float | None = Field(None, gt=0.0, description="surrogate sharpness/width; None = its default")
    v_init: float = Field(0.0, ge=0.0, le=1.0, description="initial membrane, as a fraction of v_th")

    def surrogate_alpha(self) -> float:
        return self.alpha if self.alpha is not None else SURROGATE_ALPHAS[self.surrogate]


class SpikingSpec(Frozen):
    """What makes a student spiking (stored in its manifest)."""

    T: int = Field(4, ge=1, le=1024, description="time steps")
    neuron: NeuronSpec = Field(default_factory=NeuronSpec)
    repact: bool = Field(True, description="the last activation before the classifier stays ReLU")
    encoding: Literal["direct", "event"] = Field("direct", description="direct: the image is repeated T times; "
                                                 "event: step t receives frame t of an event recording")
    method: Literal["surrogate", "cq"] = Field("surrogate", description="surrogate: LIF skeleton for BPTT; "
                                               "cq: BN folded, IF neurons with the clip as threshold")
    spiking_pool: bool = Field(False, description="cq: an IF neuron after each average pool")
    weight_bits: int | None = Field(None, ge=2, le=32, description="cq: weights were rounded to n-bit fixed point")
    scaling: Literal["none", "channel"] = Field("none", description="surrogate: none = every neuron fires at "
                                                "neuron.v_th and a spike is 1; channel = per-channel thresholds "
                                                "and spike amplitudes (buffers v_th, amp) from calibration")
    shortcut_scales: dict[str, int] = Field(default_factory=dict, description="surrogate, calibration folded into "
                                            "the weights: the residual blocks' identity shortcuts that carry a "
                                            "per-channel scale (module name -> channels; a ChannelScale there)")
