"""What enofctl's registered models share: timm's head contract and entry-point plumbing."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from enofctl.config.teacher import MAX_WIDTH  # (re-exported; the CLI reads it without torch)
from enofctl.errors import UsageError


class TimmHead(nn.Module):
    """timm's model contract over ``forward_features``: a global average pool, optional dropout and one
    linear classifier ``fc`` of ``num_features`` inputs. Subclasses call ``_init_head`` and define
    ``forward_features``. The pool is always the average (timm's ``global_pool="avg"``): an average of spike
    rates is exact after conversion, a max is not."""

    def _init_head(self, num_features: int, num_classes: int, drop_rate: float, global_pool: str = "avg") -> None:
        check_global_pool(global_pool)
        check_rate(drop_rate, "drop_rate")
        self.num_features, self.num_classes, self.drop_rate = num_features, num_classes, drop_rate
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.fc = nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None:
            check_global_pool(global_pool)
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)  # [B, C]
        if self.drop_rate:
            x = nn.functional.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def check_global_pool(global_pool: str) -> None:
    """timm's ``global_pool`` option: only ``"avg"`` is accepted (what the head does), anything else refused."""
    if global_pool != "avg":
        raise UsageError(f"global_pool={global_pool!r} is not supported: enofctl's models pool by average only "
                         "(an average of spike rates is exact after conversion, a max is not)")


def entry_kwargs(pretrained: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A registered entry point's kwargs without timm's pretrained-config plumbing."""
    if pretrained:
        raise ValueError("no pretrained weights are published for this architecture; train a teacher instead")
    return {k: v for k, v in kwargs.items() if k not in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")}


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule called ``name`` (a dotted path) is."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def scaled_channels(c: int, width: float) -> int:
    """``c`` channels scaled by ``width`` (at least 1); a width that is not a finite number in (0, MAX_WIDTH] is
    a UsageError before anything is allocated."""
    if not (isinstance(width, int | float) and 0 < width <= MAX_WIDTH):  # NaN fails every comparison
        raise UsageError(f"width {width!r} is out of range: give a number in (0, {MAX_WIDTH:g}]")
    return max(1, int(round(c * width)))


def check_rate(rate: object, name: str) -> None:
    """A dropout-like probability must be a number in [0, 1)."""
    if not (isinstance(rate, int | float) and 0 <= rate < 1):
        raise UsageError(f"{name} {rate!r} is out of range: give a probability in [0, 1)")
