"""What `convert --calibrate` did (``Manifest.calibration``): the channel fit of a surrogate student
(`enofctl.spiking.calibrate`) or the data-driven steps of a CQ conversion (`enofctl.spiking.cq`)."""

from __future__ import annotations

from pydantic import Field

from enofctl.schema.base import Frozen

# ----------------------------------------------------------------------------------------------------------
# convert --method cq


class CalibratedLayer(Frozen):
    """One IF neuron after the data-driven steps (stored in the student manifest)."""

    name: str = Field(description="the IF neuron")
    v_th: float = Field(description="its threshold")
    threshold_from: str = Field(description="clip (the ANN's bound), percentile (data-based) or pool")
    bias_of: str | None = Field(None, description="the conv/linear whose bias was calibrated; None: not "
                                "calibrated (no bias directly before the neuron, or no ANN counterpart)")
    shift: float | None = Field(None, description="mean |bias shift| over channels")
    gap_before: float | None = Field(None, description="mean |ANN activation - SNN time-averaged output| on "
                                     "the calibration data, before calibration")
    gap_after: float | None = Field(None, description="the same after calibration")
    offset_before: float | None = Field(None, description="mean over channels of |mean (ANN - SNN)|: the "
                                        "systematic part of the gap, what calibration removes; before")
    offset_after: float | None = Field(None, description="the same after calibration")


class Calibration(Frozen):
    """What the data-driven steps of `convert --method cq` did (the manifest's ``calibration``)."""

    T: int = Field(description="time steps the network was calibrated at")
    samples: int = Field(description="training images used")
    norm_percentile: float | None = Field(None, description="data-based thresholds of unbounded activations")
    bias_iterations: int = Field(0, description="passes of layer-wise bias calibration (0: none)")
    agreement_before: float | None = Field(None, description="fraction of calibration images on which the SNN's "
                                           "top-1 equals the ANN's, before bias calibration")
    agreement_after: float | None = Field(None, description="the same after")
    logit_gap_before: float | None = Field(None, description="mean |ANN logit - SNN logit| on the calibration "
                                           "data, before bias calibration")
    logit_gap_after: float | None = Field(None, description="the same after")
    classifier: str | None = Field(None, description="the linear readout whose bias was calibrated against the "
                                   "ANN's logits")
    classifier_shift: float | None = Field(None, description="mean |bias shift| over classes")
    layers: list[CalibratedLayer] = Field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------
# convert --method surrogate --calibrate N


class CalibratedChannels(Frozen):
    """One neuron after calibration (the manifest's ``calibration.layers``)."""

    name: str
    channels: int
    v_th_mean: float = Field(description="mean threshold over the channels that fire")
    amp_mean: float = Field(description="mean spike amplitude over the channels that fire")
    silent_channels: int = Field(description="channels whose best fit was to never fire")
    error_before: float = Field(description="relative error |a - out|^2 / |a|^2 of the time-averaged output "
                                "against the teacher's activation, with the spec's threshold and amplitude 1 "
                                "(on the calibrated earlier layers' currents)")
    error_after: float = Field(description="the same with the fitted thresholds and amplitudes")


class ChannelCalibration(Frozen):
    """What `convert --calibrate` did to a surrogate student."""

    method: str = Field("channel-fit", description="per-channel threshold and amplitude fit, layer by layer")
    T: int = Field(description="time steps the student was calibrated at")
    samples: int = Field(description="training images used (no labels)")
    batches: int
    grid: list[float] = Field(description="candidate thresholds, as multiples of each channel's percentile")
    percentile: float
    agreement_before: float | None = Field(None, description="fraction of the first two calibration batches on "
                                           "which the student's top-1 equals the teacher's, before calibration")
    agreement_after: float | None = None
    readout_ridge: float | None = Field(None, description="the student's classifier refitted to the teacher's "
                                        "logits by ridge regression with this strength (None: not refitted)")
    readout_shift: float | None = Field(None, description="mean |change| of the classifier's weights and bias")
    seconds: float | None = None
    folded: bool = Field(False, description="the thresholds and amplitudes were folded into the weights: the "
                         "student fires at neuron.v_th with spikes of 1 (the values here are what was folded)")
    shortcut_scale_range: tuple[float, float] | None = Field(None, description="folded: the smallest and largest "
                                                             "per-channel factor on an identity shortcut")
    fold_logit_error: float | None = Field(None, description="folded: the largest |logit| difference between the "
                                           "folded and the unfolded student on the check batches")
    reconstruct_steps: int = Field(0, description="surrogate-gradient steps pulling the calibrated student towards "
                                   "the teacher on the calibration images (0: none)")
    reconstruct_lr: float | None = Field(None, description="their Adam learning rate")
    reconstruct_loss: tuple[float, float] | None = Field(None, description="the reconstruction loss at the first "
                                                         "step and over the last pass over the batches")
    reconstruct_agreement: tuple[float, float] | None = Field(None, description="top-1 agreement with the teacher "
                                                              "on the first calibration batches before and after "
                                                              "the reconstruction steps")
    reconstruct_kept: bool | None = Field(None, description="whether the steps were kept (the agreement did not "
                                          "drop) or undone")
    reconstruct_seconds: float | None = Field(None, description="their time (training time spent before distill's "
                                              "first step)")
    bn_reestimated: bool = Field(False, description="each BatchNorm's running statistics were recomputed under "
                                 "the already-calibrated student before the neuron after it was fitted")
    layers: list[CalibratedChannels] = Field(default_factory=list)
