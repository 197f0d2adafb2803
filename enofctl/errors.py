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


class WriteError(EnofError):
    """An output could not be written (full disk, read-only folder or file system, no permission, a folder in
    the way); the file it would have replaced is intact and no temporary file is left."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or another termination signal) turned into an exception, so every ``finally`` and cleanup runs
    as for Ctrl-C; ``signum`` is the signal, the CLI exits with 128 + it (`enofctl.signals` raises it and
    remembers the latest)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def write_error(path: object, e: BaseException) -> WriteError:
    """The typed error for a failed write of ``path``: the OS's reason (ENOSPC, EROFS, EACCES, EISDIR, ...) when
    there is one, else the first line of what the writer said."""
    if isinstance(e, OSError) and e.strerror:
        reason = e.strerror
    else:
        reason = first_line(e)
    return WriteError(f"cannot write {path}: {reason}")


def first_line(e: BaseException, limit: int = 200) -> str:
    """An exception as one short line: its first non-empty line, or its type's name."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0][:limit] if lines else type(e).__name__


def first_sentence(e: BaseException, limit: int = 200) -> str:
    """``first_line(e)`` within ``limit`` characters without cutting a sentence: whole sentences that fit, else
    whole words and an ellipsis."""
    line = first_line(e, limit=10_000)
    if len(line) <= limit:
        return line
    cut = line[:limit]
    end = max(cut.rfind(". "), cut.rfind("; "))
    if end > 0:
        return cut[: end + 1] if cut[end] == "." else cut[:end]
    return cut.rsplit(" ", 1)[0].rstrip(",;:") + "…"


class MissingDependencyError(EnofError):
    """An optional package a command needs is not installed; the message names the extra to install."""
