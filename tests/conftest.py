"""Shared test fixtures. Everything here is tiny and CPU-only; nothing downloads."""

from __future__ import annotations

from pathlib import Path

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


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small trained teacher (`synthetic`, 1/8-width ResNet20, one epoch), trained once per session: the CLI
    pipeline's first step (clihelp.py). Read it only; copy it to change it."""
    from clihelp import tiny_teacher

    return tiny_teacher(tmp_path_factory)


@pytest.fixture(scope="session")
def pipe(tmp_path_factory: pytest.TempPathFactory):
    """teacher -> convert -> distill (twice) through the CLI, run once per session (clihelp.Pipeline)."""
    from clihelp import pipeline

    return pipeline(tmp_path_factory)
