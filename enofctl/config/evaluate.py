"""The config of `eval` (`EvalConfig`), without torch."""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from enofctl.config.train import default_workers

# the energy per operation `eval` multiplies the counted operations by (`enofctl.ops` reads them from here;
# the config and the CLI's help need them without torch)
E_MAC_PJ = 4.6  # pJ per 32-bit float multiply-accumulate, 45 nm (Horowitz 2014)
E_AC_PJ = 0.9  # pJ per 32-bit float accumulate, 45 nm (Horowitz 2014)


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    T: list[int] | None = Field(None, description="time steps to evaluate a student at; None = its own T. "
                                "Teachers (ANNs) ignore it.")
    batch_size: int = Field(256, ge=1)
    limit_test: int | None = Field(None, ge=1, validation_alias=AliasChoices("limit_test", "limit"),
                                  description="evaluate only the first N test samples (the name of "
                                  "TrainConfig's; `limit` is accepted too)")
    dataset: str | None = Field(None, description="override the artifact's dataset")
    data_dir: str | None = None
    download: bool = False
    device: str = "auto"
    e_mac: float = Field(E_MAC_PJ, gt=0, description="pJ per multiply-accumulate (Horowitz 2014, 45 nm)")
    e_ac: float = Field(E_AC_PJ, gt=0, description="pJ per accumulate (Horowitz 2014, 45 nm)")
    workers: int = Field(default_factory=default_workers, ge=0, description="processes that decode image "
                         "folders (0: this one); default: the cores this process may use but one, at most 8")
    speed_batches: int = Field(5, ge=0, description="timed passes over one batch for throughput/latency, after "
                               "two warm-up passes; the median counts (0: skip)")
    neurobench: bool = Field(False, description="also run NeuroBench's own Benchmark (extra `neurobench`) on "
                             "every evaluated artifact and T")
