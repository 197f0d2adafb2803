"""Build any registered timm model by name, with one error for names timm does not know."""

from __future__ import annotations

from typing import Any

import timm
import torch.nn as nn

from enofctl.errors import UsageError


def build_model(name: str, num_classes: int, in_chans: int, kwargs: dict[str, Any] | None = None,
                pretrained: bool = False) -> nn.Module:
    """``timm.create_model`` with enofctl's errors. ``kwargs`` are recorded in manifests, so keep them JSON."""
    if not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:5]
        hint = f" (did you mean: {', '.join(close)}?)" if close else ""
        raise UsageError(f"unknown model {name!r}{hint}; `python -c 'import timm; print(timm.list_models())'`")
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans,
                                 **(kwargs or {}))
    except TypeError as e:
        raise UsageError(f"model {name!r} does not accept these options {kwargs}: {e}") from e


def feature_dim(model: nn.Module) -> int:
    """Size of the output feature, i.e. of ``forward_head(x, pre_logits=True)``."""
    head = model.get_classifier()
    if isinstance(head, nn.Linear):
        return head.in_features
    return int(getattr(model, "head_hidden_size", None) or model.num_features)
