"""aimonk's one output channel: the `aimonk` logger for lines, and progress bars shown when it shows INFO.

Modules log through `logging.getLogger(__name__)` (children of `aimonk`); who runs them decides what is shown:
the command line shows INFO on stdout, the Python API's `progress=True` on stderr, in a notebook on stdout (no red
box), and also into the file $AIMONK_LOG_FILE names (how `aimonk notebooks` shows a kernel's lines as they come);
non-main torchrun processes show nothing below a warning. Bars are tqdm's text bar in a terminal
and, in a Jupyter kernel, its widget that leaves its final text (or nothing, for leave=False) in the saved
notebook instead of a frozen '0%' copy of its first state.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys

from tqdm.auto import tqdm as auto_tqdm

LOGGER = logging.getLogger("aimonk")
LOG_FILE_VARIABLE = "AIMONK_LOG_FILE"


def shown() -> bool:
    """Whether lines and bars are shown now: the aimonk logger passes INFO."""
    return LOGGER.isEnabledFor(logging.INFO)


class BarFriendlyHandler(logging.Handler):
    """Writes each record's message as a line through tqdm, so that a bar on the same stream stays whole. The
    stream is looked up at each line (sys.stdout or sys.stderr as they are then)."""

    def __init__(self, stream_name: str = "stderr"):
        super().__init__()
        self.stream_name = stream_name

    def emit(self, record: logging.LogRecord) -> None:
        try:
            auto_tqdm.write(self.format(record), file=getattr(sys, self.stream_name))
        except Exception:  # a closed stream: logging's own policy
            self.handleError(record)


@contextlib.contextmanager
def progress_shown(show: bool | None = True):
    """Within it, the aimonk logger shows INFO lines and bars (show) or only warnings (not show), with line
    handlers (stdout in a notebook, else stderr; and $AIMONK_LOG_FILE) unless the logger has some already (the
    CLI's); as it was after. show=None changes nothing (what the caller set)."""
    if show is None:
        yield
        return
    level, added = LOGGER.level, []
    if show and not LOGGER.handlers:
        added.append(BarFriendlyHandler("stdout" if in_jupyter_kernel() else "stderr"))
        if os.environ.get(LOG_FILE_VARIABLE):
            added.append(logging.FileHandler(os.environ[LOG_FILE_VARIABLE], encoding="utf-8", delay=True))
    for handler in added:
        LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO if show else logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(level)
        for handler in added:
            LOGGER.removeHandler(handler)
            handler.close()


@contextlib.contextmanager
def logger_level(logger: logging.Logger, level: int):
    """Within it `logger` shows only records of `level` and above; as it was after."""
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


def quiet():
    """Within it nothing below a warning is shown (work inside work that already reports, e.g. threshold folds)."""
    return logger_level(LOGGER, logging.WARNING)


def in_jupyter_kernel() -> bool:
    """Running in a Jupyter kernel (JupyterLab, Colab, papermill), not in a terminal or plain IPython."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return shell is not None and hasattr(shell, "kernel")


@functools.cache
def notebook_bar_class():
    """tqdm's notebook bar whose display is replaced by its final text when it closes: a saved notebook (papermill's
    executed copy, or one saved without widget state) shows what the bar ended at."""
    from IPython.display import display
    from tqdm.notebook import tqdm as widget_tqdm

    class NotebookBar(widget_tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, display=False, **kwargs)
            self.handle = None if self.disable else display(self.container, display_id=True)
            self.displayed = True

        def close(self):
            if self.disable or self.handle is None:
                return super().close()
            leave = self.leave
            final = str(self) if leave else ""
            super().close()
            self.handle.update({"text/plain": final}, raw=True)
            self.handle = None

    return NotebookBar


def progress_bar(iterable=None, **options):
    """A tqdm bar (tqdm's own options) for the place aimonk runs in, disabled while progress is not shown."""
    options["disable"] = options.get("disable", False) or not shown()
    if in_jupyter_kernel():
        try:
            return notebook_bar_class()(iterable, **options)
        except ImportError:  # no ipywidgets: tqdm's text bar
            pass
    return auto_tqdm(iterable, **options)
