"""The configs of `convert`: a surrogate student (`SurrogateConvertConfig`) or a CQ integrate-and-fire one
(`CQConvertConfig`), one of the two by ``method`` (`convert_config`), without torch."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from enofctl.schema import NeuronSpec, SpikingSpec
from enofctl.schema.surrogates import SurrogateName

# CQ conversion's neuron: integrate-and-fire, reset by subtraction, membrane starting at half the threshold
# (the threshold itself is per layer: the activation's clip).
CQ_NEURON = NeuronSpec(kind="if", decay=1.0, v_th=1.0, reset="soft", v_init=0.5)


class _CalibrationData(BaseModel):
    """Where calibration images come from (no labels are read)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    T: int = Field(4, ge=1, le=1024)
    batch_size: int = Field(128, ge=1, le=65_536, description="calibration batch size")
    seed: int = Field(0, ge=0, lt=2**32, description="which training images calibrate (a seeded shuffle)")
    data_dir: str | None = Field(None, description="calibration data [default: the teacher's]")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where calibration computes")


class SurrogateConvertConfig(_CalibrationData):
    """A LIF (or IF) student for surrogate-gradient training, optionally calibrated to work before it."""

    method: Literal["surrogate"] = "surrogate"
    neuron: NeuronSpec = Field(default_factory=NeuronSpec)
    repact: bool = Field(True, description="the last activation before the classifier stays ReLU")
    calibrate: int = Field(8, ge=0, le=100_000, description="batches of training images to fit each channel's "
                           "threshold and spike amplitude on (0 = the plain copy, which needs no data)")
    percentile: float = Field(99.0, gt=0, le=100, description="calibration: thresholds are searched as "
                              "multiples of this percentile of each channel's input (ours, unconfirmed; the grid "
                              "spans 0.03 to 1.78 times it: it sets the search range, not the result)")
    readout_ridge: float | None = Field(0.1, ge=0, description="calibration: refit the student's classifier to "
                                        "the teacher's logits by ridge regression towards its weights, with this "
                                        "strength (None: keep the teacher's classifier; 0.1 measured best of "
                                        "0.01 / 0.1 / 1 on digits)")
    reconstruct: int = Field(200, ge=0, le=1_000_000, description="calibration: then this many surrogate-gradient "
                             "steps (Adam) on the calibration images pulling every neuron's output and the logits "
                             "towards the teacher's (no labels; 0 = off; benchmarks/calibration.md)")
    reconstruct_lr: float = Field(0.003, gt=0, le=1, description="calibration: the reconstruction's learning rate")
    reconstruct_batch: int | None = Field(None, ge=1, le=65_536, description="calibration: images per "
                                          "reconstruction step (the calibration batches cut into pieces; None: "
                                          "whole batches; 32 measured worse on digits, 92.0 against 95.7 %)")
    fold: bool = Field(True, description="calibration: fold each channel's threshold and amplitude into the "
                       "weights (the spec's threshold, spikes of 1: EnOF's network; an identity shortcut may carry "
                       "a per-channel factor); False keeps them as per-channel buffers of each neuron")
    bn_reestimate: bool = Field(False, description="calibration: recompute each BatchNorm's running statistics "
                                "under the already-calibrated student before fitting the neuron after it (measured "
                                "on digits: no effect on the start in either BatchNorm mode, so off; "
                                "benchmarks/calibration.md)")

    def spiking_spec(self) -> SpikingSpec:
        return SpikingSpec(T=self.T, neuron=self.neuron, repact=self.repact,
                           scaling="channel" if self.calibrate else "none")


class CQConvertConfig(_CalibrationData):
    """Near-lossless integrate-and-fire conversion of a CQ/QCFS-trained teacher."""

    method: Literal["cq"]
    surrogate: SurrogateName = Field("triangle", description="for a later distill of the IF network")
    alpha: float | None = Field(None, gt=0, description="surrogate sharpness/width; None = its default")
    weight_bits: int | None = Field(None, ge=2, le=32, description="round weights to n-bit fixed point")
    weight_norm: bool = Field(True, description="with weight_bits: per-layer max-normalized grid")
    spiking_pool: bool = Field(False, description="an IF neuron after each average pool")
    calibrate: int = Field(0, ge=0, le=100_000, description="batches of training data for layer-wise bias "
                           "calibration at T (0 = off: the conversion needs no data)")
    norm_percentile: float | None = Field(None, gt=0, le=100, description="thresholds of unbounded (ReLU) "
                                          "activations = this percentile of the ANN's activations on the "
                                          "calibration data; bounded ones keep their clip")

    def spiking_spec(self) -> SpikingSpec:
        neuron = CQ_NEURON.model_copy(update={"surrogate": self.surrogate, "alpha": self.alpha})
        return SpikingSpec(T=self.T, neuron=neuron, repact=False, method="cq", spiking_pool=self.spiking_pool,
                           weight_bits=self.weight_bits)


ConvertConfig = Annotated[SurrogateConvertConfig | CQConvertConfig, Field(discriminator="method")]
_CONVERT_CONFIG: TypeAdapter = TypeAdapter(ConvertConfig)


def convert_config(**fields) -> SurrogateConvertConfig | CQConvertConfig:
    """The config of ``fields["method"]`` (default surrogate), validated; a field the method does not take
    (e.g. ``weight_bits`` for surrogate, ``neuron`` for cq) is refused."""
    fields.setdefault("method", "surrogate")
    return _CONVERT_CONFIG.validate_python(fields)
