"""Progress bars: tqdm's text bar in a terminal, its widget in a Jupyter kernel, and a widget that leaves its
final text (or nothing, for leave=False) in the saved notebook instead of a frozen '0%' copy of its first state."""
from __future__ import annotations

import functools
import sys

from tqdm.auto import tqdm as auto_tqdm


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
    """A tqdm bar (tqdm's own options) for the place aimonk runs in."""
    if in_jupyter_kernel():
        try:
            return notebook_bar_class()(iterable, **options)
        except ImportError:  # no ipywidgets: tqdm's text bar
            pass
    return auto_tqdm(iterable, **options)
