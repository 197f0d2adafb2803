"""How an event recording becomes one training sample (``DataRef.frames``, event datasets only)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from enofctl.schema.base import Frozen


class FrameSpec(Frozen):
    """An event recording as ``T`` frames of event counts, one channel per polarity (OFF, ON)."""

    T: int = Field(8, ge=1, le=1024, description="frames per sample (the student's time steps)")
    bins: Literal["time", "count"] = Field("time", description="time: T equal spans of the recording's duration; "
                                           "count: T runs of equally many events")
    size: tuple[int, int] | None = Field(None, description="(H, W) the sensor's pixels are scaled down to "
                                         "(events of merged pixels add up); None = the sensor's size")
