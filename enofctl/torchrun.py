"""What torchrun tells a process through its environment (``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``), read in this one place. Imports nothing heavy: the CLI asks it before torch is loaded."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Launch:
    """This process's place as torchrun started it; one process of one (the defaults) without torchrun."""

    world_size: int = 1
    local_world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """Started by torchrun with more than one process."""
        return self.world_size > 1


def launch() -> Launch:
    """The environment read now: the local sizes only count (and are only read) with more than one process;
    ``RANK`` is read whatever the world size."""
    env = os.environ
    size = int(env.get("WORLD_SIZE", "1"))
    rank = int(env.get("RANK", "0"))
    if size <= 1:
        return Launch(size, 1, rank, 0)
    return Launch(size, int(env.get("LOCAL_WORLD_SIZE", "1")), rank, int(env.get("LOCAL_RANK", "0")))
