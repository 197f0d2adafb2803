"""The activation a teacher was trained with (``ModelSpec.act``); the modules are in `enofctl.models.acts`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from enofctl.schema.base import Frozen


class ActSpec(Frozen):
    """The activation a teacher was trained with (stored in its manifest)."""

    kind: Literal["relu", "clamp", "cq", "qcfs"] = "relu"
    levels: int | None = Field(None, ge=1, le=1024, description="quantization levels Q (cq, qcfs)")

    @model_validator(mode="after")
    def _levels(self) -> ActSpec:
        if self.kind in ("cq", "qcfs") and self.levels is None:
            raise ValueError(f"--act {self.kind} needs --levels")
        if self.kind in ("relu", "clamp") and self.levels is not None:
            raise ValueError(f"--levels does not apply to --act {self.kind}")
        return self
