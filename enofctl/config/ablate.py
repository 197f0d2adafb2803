"""The config of `ablate` (`AblateConfig`) and its grids' variants, without torch."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from enofctl.config.distill import DistillConfig

ENOF_VARIANTS: dict[str, dict] = {
    "baseline": {"laf": False, "repact": False},
    "+L_AF": {"laf": True, "repact": False},
    "+RepAct": {"laf": False, "repact": True},
    "both": {"laf": True, "repact": True},
}
ACTIVITY_VARIANTS = ("CE", "KD", "KD+act", "KD+logits")
RECOMMENDED_SEEDS = 5


class AblateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    grid: Literal["enof", "activity", "both"] = "enof"
    T: list[int] = Field(default_factory=lambda: [1, 2, 4], description="enof: every T; activity: the largest")
    seeds: list[Annotated[int, Field(ge=0, lt=2**32)]] = Field(
        default_factory=lambda: list(range(RECOMMENDED_SEEDS)), min_length=1,
        description="each cell once per seed; the same seed gives every variant the same data order and "
        "calibration images, so variants are compared paired on it")
    ci: float = Field(0.95, gt=0, lt=1, description="confidence level of every interval")
    train: DistillConfig = Field(default_factory=DistillConfig, description="the shared recipe and budget")
    kd_alpha: float = Field(0.5, gt=0, le=1, description="KD weight in the activity grid")
    act_reg: float = Field(0.1, gt=0, description="activation-regularizer weight in the activity grid")
    logit_reg: float = Field(0.01, gt=0, description="logits-regularizer weight in the activity grid")
    variants: list[str] | None = Field(None, description="only these variants of the grid(s) (None = all): "
                                       "e.g. the best one again with a larger budget")

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        seen = set()
        for seed in v:
            if seed in seen:
                raise ValueError(f"seed {seed} is given twice; each seed once")
            seen.add(seed)
        return v

    @field_validator("variants")
    @classmethod
    def _known(cls, v: list[str] | None) -> list[str] | None:
        known = [*ENOF_VARIANTS, *ACTIVITY_VARIANTS]
        for name in v or []:
            if name not in known:
                raise ValueError(f"unknown variant {name!r}; variants: {', '.join(known)}")
        if v is not None and not v:
            raise ValueError("no variant given")
        return v
