"""Shared test fixtures. Everything here is tiny and CPU-only; nothing downloads."""

from __future__ import annotations

import pytest
import torch

# The test models are tiny: one thread is far faster than two contending ones on a small CI machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same random state."""
    torch.manual_seed(0)


@pytest.fixture
def tiny_resnet20():
    """The registered EnOF "ResNet20" at 1/8 width (channels 8..64), 10 classes, ``(model, input_size)``."""
    from enofctl.models import build_model

    return build_model("resnet20", 10, 3, {"width": 0.125}).eval(), (3, 16, 16)
