"""The surrogate gradients' names and default sharpness/width ``alpha``: what a manifest, the CLI's choices and
the docs read, without torch. The functions themselves are in `enofctl.surrogates`, keyed by these names."""

from __future__ import annotations

from typing import Literal

# name -> default alpha; `enofctl.surrogates.SURROGATES` pairs each with its function
SURROGATE_ALPHAS: dict[str, float] = {
    "rect": 1.0,
    "triangle": 1.0,
    "sigmoid": 4.0,
    "atan": 2.0,
    "tanh": 3.0,
    "dspike": 3.0,
}

# the names a spec, the CLI and the docs accept
SurrogateName = Literal[tuple(SURROGATE_ALPHAS)]  # type: ignore[valid-type]
