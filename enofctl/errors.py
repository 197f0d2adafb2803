"""Typed errors. The CLI maps each to one line on stderr and an exit code; the library only raises."""


class EnofError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(EnofError):
    """The request is impossible as asked: a bad option value, a missing input path, the wrong artifact kind,
    a teacher/student mismatch, an unknown model or dataset."""

    exit_code = 2


class ArtifactError(EnofError):
    """An artifact could not be read or trusted: not safetensors, truncated, tampered, newer schema."""


class DataError(EnofError):
    """A dataset is not available here; the message says how to get it."""


class TrainingError(EnofError):
    """Training could not go on (e.g. a non-finite loss)."""


class ConversionError(UsageError):
    """The model holds a module that cannot be made spiking; the message names it."""


class GateError(EnofError):
    """An evaluation gate failed (e.g. top-1 below --min-top1): the pipeline should stop."""

    exit_code = 3


class CalibrationError(EnofError):
    """Calibrating a converted student failed (e.g. a non-finite threshold); nothing was written."""


class MissingDependencyError(EnofError):
    """An optional package a command needs is not installed; the message names the extra to install."""
