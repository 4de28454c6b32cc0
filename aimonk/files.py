"""Writing outputs safely: every file atomically with the usual mode, and no run replaced unasked.

The convention for every command that writes: a file it would write must not exist yet unless
--overwrite is given (`demo` wants a new or empty folder); this is checked before any image is decoded.
"""
from __future__ import annotations

import math
import json
import errno
import hashlib
import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path


class OutputExistsError(ValueError):
    """An output folder that already holds files, without --overwrite."""


def check_output_folder(out, overwrite: bool = False, option: str = "--out", names=None) -> Path:
    """`out` as a Path, after checking it can take a command's outputs: not a file, writable, and none of
    the files `names` already there (with names=None: the folder new or empty) unless `overwrite`.
    Raises one-line ValueErrors naming the option and the path; call it before any expensive work."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{option} {out} is a file, not a folder")
    if out.is_dir():
        existing = sorted(p.name for p in out.iterdir()) if names is None else \
            [name for name in names if (out / name).exists()]
        if existing and not overwrite:
            raise OutputExistsError(f"{option} {out} already holds {', '.join(existing[:3])}"
                                    f"{' and more' if len(existing) > 3 else ''}; choose a new folder"
                                    f"{'' if names is None else ' or add --overwrite to replace them'}")
    parent = next((p for p in [out, *out.parents] if p.exists()), Path("."))
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{option} {out}: {parent} is not writable")
    return out


def refuse_existing(path, overwrite: bool = False) -> Path:
    """`path` as a Path, after checking that it does not exist yet unless `overwrite`: a one-line error names it."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; choose another path, or pass overwrite=True "
                                "(--overwrite) to replace it")
    return path


def check_outputs(folders: dict, overwrite: bool = False) -> None:
    """Before any work: none of the outputs named in each folder ({folder: [file or subfolder names]}; a name
    None is skipped) exists yet unless `overwrite`. One line names the first and counts the others."""
    existing = [Path(folder) / name for folder, names in folders.items() for name in names
                if name and (Path(folder) / name).exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more of this run's outputs)" if len(existing) > 1 else ""
        raise OutputExistsError(f"{existing[0]} already exists{more}; choose another out_dir or figures_dir, or set "
                                "overwrite = True (`aimonk notebooks --overwrite`) to replace them")


_STALE: dict[Path, set[Path]] = {}  # per folder: temporaries found there when this process first wrote to it
_WRITER = f"{os.getpid()}@{socket.gethostname()}@"  # in a temporary's name, so that others can tell it is alive


def remove_stale_temporaries(path: Path) -> None:
    """Remove the `.NAME.*.tmp` files a writer killed mid-write (SIGKILL) left beside `path`: those of a
    process of this machine that is gone (never those of a writer still at work, here or on another machine
    sharing the folder). Each folder is listed once per process, so writing many files into one folder stays
    linear in their number."""
    folder = path.parent.resolve()
    if folder not in _STALE:
        _STALE[folder] = set(folder.glob(".*.tmp"))
    prefix = f".{path.name}."
    for stale in [p for p in _STALE[folder] if p.name.startswith(prefix) and writer_gone(p.name[len(prefix):])]:
        stale.unlink(missing_ok=True)
        _STALE[folder].discard(stale)


def writer_gone(name: str) -> bool:
    """Whether the process that named a temporary `PID@HOST@...` (after the target's name) has ended; names
    of another form are an earlier version's, whose writer has ended too."""
    pid, _, rest = name.partition("@")
    if not pid.isdigit() or "@" not in rest:
        return True
    if rest.rsplit("@", 1)[0] != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; on success it replaces `path` (mode as a new file would
    have), on any failure it is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_WRITER}", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, _default_mode())
        os.replace(temporary, path)
    except Exception as error:  # torch.save says a full disk as a RuntimeError ('unexpected pos ...')
        if disk_full(error, path.parent):  # named as the file the user asked for, not the temporary
            raise OSError(errno.ENOSPC, "no space left on the device: the earlier file, if any, is unchanged",
                          str(path)) from error
        raise
    finally:
        Path(temporary).unlink(missing_ok=True)


def disk_full(error: Exception, folder: Path) -> bool:
    """Whether a failed write failed for want of space: the error says so, or the disk has (almost) none left."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    try:
        return isinstance(error, (OSError, RuntimeError)) and shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def json_text(value, indent: int | None = 2, ensure_ascii: bool = True) -> str:
    """Strict JSON (RFC 8259): a NaN or infinite number is written as null, never as bare NaN/Infinity. Every
    JSON aimonk writes (run files, cache metadata, the labelling journal, ONNX metadata) goes through it."""
    return json.dumps(_finite(value), indent=indent, allow_nan=False, ensure_ascii=ensure_ascii)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def write_text(path, text: str) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path, data: bytes) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def file_digest(path) -> str:
    """A short content hash of a file (to recognise the same image under another path)."""
    return hashlib.blake2b(Path(path).read_bytes(), digest_size=10).hexdigest()


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet runs as a formula (OWASP, CSV injection)


def spreadsheet_safe(value):
    """A text value that a spreadsheet would run as a formula, prefixed with a single quote; anything else as
    it is (numbers, negative ones included, are never text here)."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def csv_text(frame, index: bool = True) -> str:
    """A pandas frame as CSV text with every text cell, column name and index label that starts with = + - @ tab
    or CR written with a leading ' (OWASP's advice against CSV injection): a reader drops one leading ' from
    such a text cell to get the value back."""
    safe = frame.rename(index=spreadsheet_safe, columns=spreadsheet_safe)
    for column in safe.columns:
        if safe[column].dtype.kind not in "biufcmM":  # text (object or string dtype), not numbers or times
            safe[column] = safe[column].map(spreadsheet_safe)
    safe.index = safe.index.set_names([spreadsheet_safe(name) for name in safe.index.names])
    text = safe.to_csv(index=index)
    # the csv module quotes a cell holding CR only when CR is in its line terminator: else such a cell splits its row
    return safe.to_csv(index=index, lineterminator="\r\n") if "\r" in text else text


def write_csv(path, frame, index: bool = True) -> Path:
    """csv_text(frame) written atomically to path."""
    return write_text(path, csv_text(frame, index))


LOCK_NAME = ".aimonk.lock"


class FolderInUseError(ValueError):
    """An output folder another live aimonk run holds."""


@contextmanager
def folder_lock(folder, option: str = "--out"):
    """Hold `folder` (made if missing, and removed again if it is left empty) for this run alone: a second run
    on it refuses in one line naming the folder and the holder; a lock whose process has ended (this machine)
    is cleared. The lock is the file .aimonk.lock holding PID@HOST@, put in place whole by a hard link."""
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    while not _take(lock):
        holder = _read_holder(lock)
        if holder is not None and not writer_gone(holder):
            pid, host = holder.split("@")[:2]
            raise FolderInUseError(f"{option} {folder} is in use by another aimonk run (process {pid} on {host}): "
                                   "wait for it to end, or choose another folder")
        lock.unlink(missing_ok=True)  # its run has ended: take it over
    try:
        yield folder
    finally:
        if _read_holder(lock) == _WRITER:
            lock.unlink(missing_ok=True)
        if created and not any(folder.iterdir()):
            folder.rmdir()


def _take(lock: Path) -> bool:
    """Create `lock` holding this process's name, whole, unless it exists."""
    handle, temporary = tempfile.mkstemp(dir=lock.parent, prefix=f"{lock.name}.{_WRITER}", suffix=".tmp")
    try:
        os.write(handle, _WRITER.encode("utf-8"))
        os.close(handle)
        os.link(temporary, lock)
        return True
    except FileExistsError:
        return False
    finally:
        Path(temporary).unlink(missing_ok=True)


def _read_holder(lock: Path) -> str | None:
    try:
        return lock.read_text(encoding="utf-8")
    except OSError:
        return None


@contextmanager
def file_lock(path, option: str = "--out"):
    """Hold the file `path` (about to be written) for this process alone, by the lock file .NAME.lock beside it
    (taken as folder_lock takes its own): a second writer refuses in one line naming the file and the holder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.parent / f".{path.name}.lock"
    while not _take(lock):
        holder = _read_holder(lock)
        if holder is not None and not writer_gone(holder):
            pid, host = holder.split("@")[:2]
            raise FolderInUseError(f"{option} {path} is being written by another aimonk process (process {pid} on "
                                   f"{host}): wait for it to end, or choose another name")
        lock.unlink(missing_ok=True)  # its writer has ended: take it over
    try:
        yield path
    finally:
        if _read_holder(lock) == _WRITER:
            lock.unlink(missing_ok=True)
