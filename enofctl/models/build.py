"""Build any registered timm model by name, with one error for names timm does not know and one for options
it cannot build with; and a dry run that says whether a model can take its input size."""

from __future__ import annotations

import math
import re
from typing import Any

import timm
import torch
import torch.nn as nn

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


# The model kwargs a manifest or --model-arg may pass to timm.create_model: scalars that shape the network. The
# registered models (resnet20/19, vgg7) take width, drop_rate and global_pool; timm's own take the drop rates and
# channel/width/depth multipliers. Anything else is refused: a name like checkpoint_path, pretrained_cfg, file,
# url or hf_hub_id would make timm read (or download) what a forged manifest names.
SAFE_MODEL_KWARGS = frozenset({"width", "width_multiplier", "channel_multiplier", "depth_multiplier", "drop_rate",
                               "drop_path_rate", "drop_block_rate", "global_pool"})
_POOL_NAME = re.compile(r"[a-z]{1,16}")


def check_model_kwargs(kwargs: dict[str, Any]) -> None:
    """Refuse option names outside ``SAFE_MODEL_KWARGS``, values that are not numbers (``global_pool``: a short
    name), non-finite numbers, and drop rates outside [0, 1)."""
    for key, value in kwargs.items():
        if key not in SAFE_MODEL_KWARGS:
            raise UsageError(f"model option {key!r} is not allowed (enofctl passes only "
                             f"{', '.join(sorted(SAFE_MODEL_KWARGS))} to the model; never a file, URL or hub id)")
        if key == "global_pool":
            if not (isinstance(value, str) and _POOL_NAME.fullmatch(value)):
                raise UsageError(f"model option global_pool={value!r}: give a pooling name such as avg")
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UsageError(f"model option {key}={value!r}: give a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"model option {key}={value}: not a finite number")
        if key.endswith("drop_rate") or key.endswith("drop_path_rate") or key.endswith("drop_block_rate"):
            if isinstance(value, bool) or not (isinstance(value, int | float) and 0 <= value < 1):
                raise UsageError(f"model option {key}={value!r}: give a probability in [0, 1)")


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
