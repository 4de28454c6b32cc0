"""Reading a file torch.save wrote, with weights_only (no code runs), and one-line reasons for anything else."""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import torch


LEGACY_START = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"  # torch.save before 1.6: its magic


def load_torch_file(path, what: str):
    """The object in `path` (a torch.save zip archive, or its format before PyTorch 1.6), or a ValueError naming
    the file and what is wrong."""
    path = Path(path)
    if not zipfile.is_zipfile(path):  # checked first, so torch never tries a foreign pickle
        with open(path, "rb") as handle:
            start = handle.read(len(LEGACY_START))
        if start != LEGACY_START:
            raise ValueError(f"{path} is not a readable {what} ("
                             + ("the file is empty" if not start else "not a file torch.save wrote: truncated, "
                                "or another kind of file") + ")")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for truncated, foreign or malicious files
        raise ValueError(f"{path} is not a readable {what} ({load_failure(error)})") from None


def load_failure(error: Exception) -> str:
    """Why torch.load refused a file, in a few words (never its advice to turn weights_only off)."""
    text = str(error)
    if "GLOBAL" in text or "Unsupported global" in text:
        return "it would run code or build Python objects, which is refused"
    if "central directory" in text or "zip archive" in text or isinstance(error, EOFError):
        return "truncated or damaged"
    if "Weights only load failed" in text or "invalid load key" in text or "magic number" in text:
        return "not a PyTorch file, or a corrupt one"
    if not text.strip():
        return "the file is empty or truncated"
    first = re.split(r"(?<=[.:;])\s", text.strip().splitlines()[0], maxsplit=1)[0]  # its first sentence, whole
    return f"{type(error).__name__}: {first if len(first) <= 160 else first[:first.rfind(' ', 0, 160)] + ' ...'}"
