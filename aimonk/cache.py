"""Disk-backed caches that later runs reuse: decoded images and backbone features as memory-mapped .npy files.

A labelled folder is decoded once per image size into `<cache>/images/<key>.npy`, written image by image
(memory stays bounded however many images there are) and read back as a memory map, so a dataset larger
than memory trains without holding it, and the next run on the same folder skips decoding. The key covers
every file's path, size and modification time and the image size, so a changed, added or removed file makes
a new entry. Backbone features are cached the same way, keyed by the image entry and the backbone, its
weights and the engine that computed them; so are the ONNX graphs the CPU engine runs backbones with
(aimonk.model.engine), keyed by the weights' checksum.

The cache lives in $AIMONK_CACHE, else $XDG_CACHE_HOME/aimonk, else ~/.cache/aimonk (never in your data or
run folders); AIMONK_CACHE=off turns it off (everything is then computed in memory, as before).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import mmap
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aimonk.files import atomic_path, json_text


def cache_root() -> Path | None:
    """The cache folder, or None when AIMONK_CACHE=off."""
    setting = os.environ.get("AIMONK_CACHE", "")
    if setting.lower() in ("off", "0", "none", "false"):
        return None
    if setting:
        return Path(setting)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aimonk"


def files_key(paths, *extra) -> str:
    """A key that changes when any file's path, size or modification time changes, or any extra value."""
    digest = hashlib.sha256(json.dumps([str(e) for e in extra]).encode())
    for path in paths:
        stat = Path(path).stat() if Path(path).exists() else None
        digest.update(f"{Path(path).resolve()}|{stat.st_size if stat else -1}|{stat.st_mtime_ns if stat else -1}\n"
                      .encode())
    return digest.hexdigest()[:32]


def load_array(kind: str, key: str, verify: bool = True) -> tuple[np.ndarray, dict] | None:
    """(memory-mapped array, its metadata) of a complete, intact entry, or None. verify=False skips the
    checksum (for the entry store_array has just written and hashed)."""
    root = cache_root()
    if root is None:
        return None
    array_path, meta_path = root / kind / f"{key}.npy", root / kind / f"{key}.json"
    if not (array_path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        array = np.load(array_path, mmap_mode="c")  # copy-on-write: writable here (torch wants that), never on disk
        rows = meta["rows"]
        intact = isinstance(rows, int) and 0 <= rows <= len(array) and isinstance(meta["digest"], str) and (
            not verify or meta["digest"] == content_digest(array[:rows]))
    except (OSError, ValueError, KeyError, TypeError):
        intact = False
    if not intact:  # damaged (or written before entries had a digest): recomputed, and replaced
        return None
    with contextlib.suppress(OSError):  # its last use, for `aimonk cache --clear --older-than DAYS`
        os.utime(meta_path)
    return array[:rows], meta


def content_digest(array: np.ndarray) -> str:
    """A checksum of the array's bytes, read block by block (so a memory-mapped entry never sits in memory)."""
    digest = hashlib.blake2b(digest_size=16)
    step = max(1, (64 << 20) // max(1, array[:1].nbytes))
    for start in range(0, len(array), step):
        digest.update(np.ascontiguousarray(array[start:start + step]).data)
    release_pages(array)
    return digest.hexdigest()


def store_array(kind: str, key: str, shape, dtype, fill, meta: dict | None = None):
    """Create an entry of `shape` on disk, let fill(writable memory map) -> rows used write it, then publish it
    atomically (array first, metadata last). Returns (memory-mapped array, metadata); without a cache (or
    with kind None: not to be kept), the array is in memory."""
    root = cache_root() if kind else None
    folder = writable_folder(root / kind) if root else None
    if folder is None:
        return in_memory(shape, dtype, fill, meta)
    filled = None
    try:
        with atomic_path(folder / f"{key}.npy") as temporary:
            writable = np.lib.format.open_memmap(temporary, mode="w+", dtype=dtype, shape=tuple(shape))
            reserve(temporary)
            rows = fill(writable)
            writable.flush()
            digest = content_digest(writable[:rows])
            filled = writable[:rows]
            del writable
        meta = {**(meta or {}), "rows": rows, "digest": digest}
        with atomic_path(folder / f"{key}.json") as temporary:
            temporary.write_text(json_text(meta, indent=None))
    except OSError as error:  # every write of an entry: its header, its data, its metadata
        if not isinstance(error, NoRoom) and error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        warnings.warn(f"the aimonk cache {folder.parent} has no room for "
                      f"{error if isinstance(error, NoRoom) else 'this entry'} more: working in memory (free space "
                      "there, or set AIMONK_CACHE to another folder, or to off)", stacklevel=3)
        if filled is None:
            return in_memory(shape, dtype, fill, meta)
        (folder / f"{key}.npy").unlink(missing_ok=True)  # published without its metadata: never used
        return np.array(filled), meta
    return load_array(kind, key, verify=False)  # hashed above, as it was written


def in_memory(shape, dtype, fill, meta: dict | None):
    array = np.zeros(shape, dtype)
    rows = fill(array)
    return array[:rows], {**(meta or {}), "rows": rows}


class NoRoom(OSError):
    """The disk cannot hold a cache entry (its message: the size asked for)."""


def reserve(path: Path) -> None:
    """Allocate the disk blocks of the file at `path` before it is written through a memory map: writing
    into a map of blocks the disk cannot provide kills the process with SIGBUS, a failed allocation is an
    error to handle. File systems without the call reserve nothing (as before)."""
    size = os.path.getsize(path)
    if not hasattr(os, "posix_fallocate"):
        return
    handle = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(handle, 0, size)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoRoom(f"{size / 2**20:.0f} MB") from error
    finally:
        os.close(handle)


def writable_folder(folder: Path) -> Path | None:
    """`folder`, created if needed, or None with a warning when the cache cannot be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    warnings.warn(f"the aimonk cache {folder.parent} cannot be written: working in memory (set AIMONK_CACHE to a "
                  "writable folder, or to off)", stacklevel=3)
    return None


def release_pages(array: np.ndarray) -> None:
    """Let the kernel drop the pages of a memory-mapped array read so far (they are re-read from disk if
    needed again), so that reading a large cache entry once does not keep it all resident."""
    mapping = getattr(array, "_mmap", None)
    if mapping is not None and hasattr(mapping, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        mapping.madvise(mmap.MADV_DONTNEED)


CACHE_KINDS = ("images", "features", "graphs")  # the folders the cache writes; nothing else under its root is touched
KEY = re.compile(r"[0-9a-f]{32}")  # files_key's names


@dataclass
class CacheEntry:
    """One entry: its kind (images, features), what it holds, the folder it was made from, bytes, last use."""

    kind: str
    key: str
    what: str
    source: str
    size: int
    modified: float  # seconds since the epoch
    files: list[Path]

    @property
    def age_days(self) -> float:
        return (time.time() - self.modified) / 86400


def cache_entries() -> list[CacheEntry]:
    """Every entry in the cache (none when it is off or empty), the most recently used first; an array without
    its metadata (an interrupted write) is listed as 'incomplete'."""
    root = cache_root()
    if root is None or not root.is_dir():
        return []
    entries = []
    for kind in [root / name for name in CACHE_KINDS if (root / name).is_dir()]:
        for array in (path for path in kind.glob("*.npy") if KEY.fullmatch(path.stem)):
            meta_path = array.with_suffix(".json")
            try:
                meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {"what": "incomplete"}
            except (OSError, ValueError):
                meta = {"what": "damaged metadata"}
            if not isinstance(meta, dict):  # JSON, but not what store_array writes
                meta = {"what": "damaged metadata"}
            files = [p for p in (array, meta_path) if p.is_file()]
            entries.append(CacheEntry(kind.name, array.stem, str(meta.get("what", "")), str(meta.get("source", "?")),
                                      sum(p.stat().st_size for p in files), max(p.stat().st_mtime for p in files),
                                      files))
    return sorted(entries, key=lambda entry: -entry.modified)


def clear_cache(older_than_days: float | None = None) -> list[CacheEntry]:
    """Remove every entry (or those last used more than `older_than_days` ago); returns the entries removed."""
    removed = [entry for entry in cache_entries() if older_than_days is None or entry.age_days > older_than_days]
    for entry in removed:
        for path in entry.files:
            path.unlink(missing_ok=True)
    return removed
