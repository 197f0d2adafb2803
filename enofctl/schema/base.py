"""The base every persisted model shares: immutable, and strict about fields it does not know."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """A persisted record: ``extra="forbid"`` (an unknown or misspelled field is an error, never dropped) and
    ``frozen=True`` (change one with ``model_copy(update=...)``, so a manifest cannot drift from what was
    written)."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())
