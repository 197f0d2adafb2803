"""The config of `export` (`ExportConfig`), without torch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# seconds per step: snnTorch's NIR reader assumes this step; `enofctl.spiking.nir_export` reads it from here
# (the config and the CLI's help need it without torch)
DEFAULT_DT = 1e-4


class ExportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["nir"] = "nir"
    dt: float = Field(DEFAULT_DT, gt=0, description="seconds per time step the NIR neuron parameters are given "
                      "for (snnTorch's reader assumes 1e-4)")
    sum_pool: bool = Field(False, description="average pools as nir.SumPool2d, their 1/k^2 moved into the next "
                           "layer (more NIR readers take SumPool2d)")
    split_head: bool = Field(False, description="RepAct students: export the spiking body as NIR and save the "
                             "ReLU + pool + classifier head beside it")
