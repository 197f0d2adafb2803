"""Files: the one atomic write (a reader sees the old file or the new one, never half of one, and no temporary
file outlives its writer for long), the check that an input is a regular file before it is opened, and JSON
read from untrusted bytes with depth and size limits before parsing."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from enofctl.errors import EnofError, UsageError, write_error

MAX_JSON_DEPTH = 64  # a manifest nests about 6 deep; Python's parser recurses ~1,000 deep before it fails
MAX_INT_DIGITS = 40  # no count, offset or setting needs more; Python refuses 4,300 with a traceback


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Write ``path`` through ``write(tmp)``, which fills a temporary file beside it; then fsync and rename.

    The temporary file (``.NAME.PID.tmp`` in the same folder, so the rename stays on one file system) is
    removed on every exit path: an exception, Ctrl-C, or SIGTERM (which the CLI turns into an exception);
    ``path`` is then left as it was. One a killed writer (SIGKILL) left behind is removed by the next write of
    ``path``. A failure of the disk or the writer (ENOSPC, EROFS, EACCES, EISDIR, ...) is a `WriteError`.
    """
    path = Path(path)
    remove_stale_temps(path)
    tmp = _temp_name(path, os.getpid())
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # as any new file (a writer may create its file 0600)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except EnofError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as e:  # the OS's errors, and the writers' own types for them (safetensors, torch)
        tmp.unlink(missing_ok=True)
        raise write_error(path, e) from e
    except BaseException:  # Ctrl-C, SIGTERM
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def current_umask() -> int:
    """The process's umask (read from /proc where there is one: setting it to read it back is not
    thread-safe)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_dir(folder: str | Path, fill: Callable[[Path], object]) -> Path:
    """Write the folder ``folder`` as a whole or not at all: ``fill(tmp)`` writes its files into a temporary
    folder beside it (``.NAME.PID.tmp``), each file is fsynced, then the folder is renamed into place. An
    existing ``folder`` is swapped out (renamed to ``.NAME.PID.old``, the new one renamed in, the old one
    removed), so a reader sees the old folder or the new one; the caller decides whether it may be replaced.
    On any failure or interrupt the temporary folder is removed and ``folder`` is as it was."""
    folder = Path(folder)
    remove_stale_temps(folder)
    tmp, old = _temp_name(folder, os.getpid()), folder.with_name(f".{folder.name}.{os.getpid()}.old")
    swapped = False
    try:
        tmp.mkdir()
        fill(tmp)
        for p in sorted(tmp.iterdir()):
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(tmp)
        if folder.is_dir():
            os.replace(folder, old)
            swapped = True
        os.replace(tmp, folder)
    except BaseException as e:  # the disk, the writer, Ctrl-C, SIGTERM: put everything back as it was
        if swapped and not folder.exists():
            os.replace(old, folder)
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, Exception) and not isinstance(e, EnofError):
            raise write_error(folder, e) from e
        raise
    if swapped:
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(folder.parent)
    return folder


def _temp_name(path: Path, pid: int) -> Path:
    return path.with_name(f".{path.name}.{pid}.tmp")


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Remove the temporary files (or folders) `atomic_write` and `atomic_write_dir` left beside ``path`` in
    processes that no longer run (a SIGKILL mid-write); returns them. A live process's (another writer's, this
    one's) is left alone."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.(?:tmp|old)")
    removed = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        m = pattern.fullmatch(name)
        if m and not _alive(int(m.group(1))):
            stale = path.with_name(name)
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process, or a pid we cannot ask about: leave its file
    return True


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------------------
# reading


def regular_file(path: str | Path) -> os.stat_result:
    """``path``'s stat if it is a regular file (symlinks followed); a `UsageError` for a missing path, a folder,
    a FIFO, a device or a socket, decided without opening it (opening a FIFO would block)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{path} is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{path} is a {file_kind(st.st_mode)}, not a regular file (refused without opening it)")
    return st


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "directory")):
        if test(mode):
            return name
    return "regular file" if stat.S_ISREG(mode) else "special file"


def loads_bounded(text: str | bytes) -> Any:
    """``json.loads`` for untrusted text: nesting deeper than ``MAX_JSON_DEPTH`` and integers longer than
    ``MAX_INT_DIGITS`` are refused before they reach the parser (which fails on them with a RecursionError or
    a ValueError of its own). Raises ValueError (json.JSONDecodeError for bad syntax)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return json.loads(text, parse_int=_bounded_int)


# a JSON string, or an unterminated one to the end: every match succeeds, so the scan is linear for any input
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\\?\Z)', re.DOTALL)
_OPEN, _CLOSE = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)


def json_depth(text: str) -> int:
    """How deep the brackets of a JSON text nest outside its strings (linear time, for any input)."""
    chars = np.frombuffer(_JSON_STRING.sub("", text).encode(), dtype=np.uint8)
    steps = np.isin(chars, _OPEN).astype(np.int64) - np.isin(chars, _CLOSE)
    return int(np.cumsum(steps).max(initial=0))


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"JSON integer of {len(digits)} digits (at most {MAX_INT_DIGITS})")
    return int(digits)
