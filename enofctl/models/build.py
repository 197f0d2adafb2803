"""Build any registered timm model by name, with one error for names timm does not know and one for options
it cannot build with; and a dry run that says whether a model can take its input size."""

from __future__ import annotations

import re
from typing import Any

import timm
import torch
import torch.nn as nn

from enofctl.config.model_kwargs import check_model_kwargs, check_recorded_kwargs  # noqa: F401 (re-exported)
from enofctl.errors import EnofError, UsageError, first_line


def build_model(name: str, num_classes: int, in_chans: int, kwargs: dict[str, Any] | None = None,
                pretrained: bool = False) -> nn.Module:
    """``timm.create_model`` with enofctl's errors. ``kwargs`` are recorded in manifests, so keep them JSON."""
    if not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:5]
        hint = f" (did you mean: {', '.join(close)}?)" if close else ""
        raise UsageError(f"unknown model {name!r}{hint}; `python -c 'import timm; print(timm.list_models())'`")
    check_model_kwargs(kwargs or {})
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans,
                                 **(kwargs or {}))
    except EnofError:
        raise
    except TypeError as e:
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if unknown:
            key = unknown.group(1)
            hint = " (--width is an option of resnet20, resnet19 and vgg7)" if key == "width" else ""
            raise UsageError(f"model {name!r} takes no option {key!r}{hint}") from e
        raise UsageError(f"model {name!r} does not accept these options {kwargs}: {first_line(e)}") from e
    except MemoryError as e:
        raise UsageError(f"model {name!r} with {kwargs} does not fit in memory") from e
    except Exception as e:  # timm's models check their arguments with asserts, ValueErrors, ...
        raise UsageError(f"model {name!r} cannot be built with {kwargs}: {first_line(e)}") from e


def forward_problem(model: nn.Module, input_size: tuple[int, ...]) -> str | None:
    """Why ``model`` (in eval mode, on 2 zero images of ``input_size``) cannot compute, or None if it can."""
    training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(2, *input_size, device=_device_of(model)))
    except MemoryError:
        raise
    except Exception as e:  # shape errors, timm's input-size asserts, ...
        return first_line(e, 160)
    finally:
        model.train(training)
    return None


def _device_of(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def feature_dim(model: nn.Module) -> int:
    """Size of the output feature, i.e. of ``forward_head(x, pre_logits=True)``."""
    head = model.get_classifier()
    if isinstance(head, nn.Linear):
        return head.in_features
    return int(getattr(model, "head_hidden_size", None) or model.num_features)
