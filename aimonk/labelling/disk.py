"""Writing a label file's new bytes: one atomic replace keeping the file's mode, the original kept once, and the
journal of changed cells (JSON lines) appended and read."""
from __future__ import annotations

import errno
import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Callable

from aimonk.files import disk_full, json_text, remove_stale_temporaries

Hook = Callable[[Path], None]


def replace_file(path: Path, data: bytes, status: os.stat_result, hook: Hook | None) -> None:
    """`data` in place of `path` in one rename: written beside it, fsynced, with its mode (and owner, as root);
    on any failure or interrupt the temporary is removed and `path` is as it was."""
    remove_stale_temporaries(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp",
                                         prefix=f".{path.name}.{os.getpid()}@{socket.gethostname()}@")
    try:
        write_synced(handle, data)
        os.chmod(temporary, status.st_mode & 0o7777)
        if os.geteuid() == 0 and (status.st_uid, status.st_gid) != (0, 0):
            os.chown(temporary, status.st_uid, status.st_gid)
        if hook is not None:
            hook(Path(temporary))
        os.replace(temporary, path)
        _sync_folder(path.parent)
    except OSError as error:
        if disk_full(error, path.parent):
            raise OSError(errno.ENOSPC, "No space left on device", str(path)) from error
        raise
    finally:
        Path(temporary).unlink(missing_ok=True)


def write_synced(handle: int, data: bytes) -> None:
    """`data` into the open file `handle`, on the disk before it is closed."""
    with os.fdopen(handle, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def keep_original(original: Path, data: bytes, status: os.stat_result) -> None:
    """The original bytes as `original`, whole, never over an existing file (a hard link of a full temporary)."""
    handle, temporary = tempfile.mkstemp(dir=original.parent, prefix=f".{original.name}.", suffix=".tmp")
    try:
        write_synced(handle, data)
        os.chmod(temporary, status.st_mode & 0o777)
        try:
            os.link(temporary, original)
        except FileExistsError:
            pass
    finally:
        Path(temporary).unlink(missing_ok=True)


def _sync_folder(folder: Path) -> None:
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def append_journal(journal: Path, records: list[dict]) -> None:
    text = "".join(json_text(record, indent=None, ensure_ascii=False) + "\n" for record in records)
    with open(journal, "a+b") as out:
        out.seek(0, os.SEEK_END)
        if out.tell():
            out.seek(-1, os.SEEK_END)
            text = ("" if out.read(1) == b"\n" else "\n") + text  # after a line a crash cut short
        out.write(text.encode("utf-8"))
        out.flush()
        os.fsync(out.fileno())


def read_journal(journal: Path) -> list[dict]:
    """The journal's records; a line a crash cut short is passed over."""
    try:
        lines = journal.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and {"batch", "filename", "attribute", "old", "new"} <= record.keys():
            records.append(record)
    return records
