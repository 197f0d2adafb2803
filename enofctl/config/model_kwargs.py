"""Which model options (timm ``create_model`` kwargs) a config or a manifest may record: numbers that shape
the network, never a name that makes timm read or download something. No torch: `inspect` and the configs
check a manifest's options without loading the library."""

from __future__ import annotations

import math
import re
from typing import Any

from enofctl.errors import UsageError


def check_model_kwargs(kwargs: dict[str, Any]) -> None:
    """Refuse option values no model can use: non-finite numbers, and drop rates outside [0, 1)."""
    for key, value in kwargs.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"model option {key}={value}: not a finite number")
        if key.endswith("drop_rate") or key.endswith("drop_path_rate") or key.endswith("drop_block_rate"):
            if isinstance(value, bool) or not (isinstance(value, int | float) and 0 <= value < 1):
                raise UsageError(f"model option {key}={value!r}: give a probability in [0, 1)")


# The model kwargs a manifest or a config (--model-arg) may record, and so pass to timm.create_model: numbers
# that shape the network (the registered models' width and drop_rate, timm's drop rates, channel/width/depth
# multipliers, img_size, mlp_ratio, ...) under any name but those that fetch weights, and global_pool as a short
# name. A string, a boolean, a list or an object is refused, and so is every name that makes timm read or
# download something (checkpoint_path, pretrained, pretrained_cfg(_overlay), file, url, hf_hub_id, cache_dir):
# a forged manifest cannot make enofctl read a file it names.
_FETCHING = re.compile(r"pretrained.*|.*(path|file|url|hub|cache).*")
_POOL_NAME = re.compile(r"[a-z]{1,16}")


def check_recorded_kwargs(kwargs: dict[str, Any]) -> None:
    """A UsageError naming the first model option a manifest or config may not record (see above)."""
    for key, value in kwargs.items():
        if _FETCHING.fullmatch(key):
            raise UsageError(f"model option {key!r} is not allowed: enofctl never lets a model option name "
                             "weights, a file, a URL or a hub id")
        if key == "global_pool":
            if not (isinstance(value, str) and _POOL_NAME.fullmatch(value)):
                raise UsageError(f"model option global_pool={value!r}: give a pooling name such as avg")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise UsageError(f"model option {key}={value!r} is not allowed: model options are numbers "
                             "(global_pool: a name)")
    check_model_kwargs(kwargs)
