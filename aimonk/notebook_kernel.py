"""One notebook's kernel as `aimonk notebooks` runs it (aimonk.notebooks): on local sockets, watched, and shown.

The kernel manager is jupyter_client's asynchronous one, so that nbclient's check that the kernel is alive (each
second) runs while a cell does: a kernel that dies (killed, out of memory, a crash) is said at once, with how its
process ended, instead of waiting on its silence. The terminal shows one line per notebook, `[i/N] name: cell k/M`
with the time it has run (no estimate of what is left: one cell may take an hour), and the kernel's lines above it.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from tqdm.auto import tqdm

from aimonk.progress import LOG_FILE_VARIABLE

ON_POSIX = os.name == "posix"
LINE = "{desc}: cell {n}/{total} [{elapsed}]"  # no estimate of the time left: cells differ by hours


class KernelWatch:
    """What papermill needs to run one notebook here (execute_options) and what happened in it: the cell running
    (`cell`, the `started`-th of `total`), and the kernel's process (`process`, how it ended) and own lines."""

    def __init__(self, description: str, code_cells: int, shown: bool, tick: float = 1.0):
        self.cell, self.process, self.started, self.busy = None, None, 0, False
        self.description, self.total, self.began = description, code_cells, time.monotonic()
        self.shown, self.live = shown, shown and sys.stderr.isatty()
        self.kernel_log = tempfile.TemporaryFile()  # the kernel process's own lines (its cells' are in the notebook)
        # in a terminal a line redrawn each second; elsewhere (a log file) it once, when the notebook ends
        self.bar = tqdm(total=code_cells, desc=description, bar_format=LINE, disable=not self.live, file=sys.stderr)
        self.stop = threading.Event()
        if self.live:
            threading.Thread(target=self.tick, args=(tick,), daemon=True).start()

    def execute_options(self) -> dict:
        """papermill.execute_notebook's options: this watch's kernel manager and cell hook, no papermill bar."""
        return {"kernel_manager_class": self.kernel_manager_class(), "on_cell_execute": self.cell_started,
                "on_cell_executed": self.cell_ended, "progress_bar": False}

    def cell_started(self, cell, cell_index: int) -> None:
        self.cell, self.started, self.busy = cell, self.started + 1, True
        self.total = self.bar.total = max(self.total, self.started)
        self.bar.n = self.started
        self.bar.refresh()

    def cell_ended(self, **reply) -> None:
        self.busy = False

    def tick(self, every: float) -> None:
        while not self.stop.wait(every):
            self.bar.refresh()

    def close(self) -> None:
        """The line stays as it ended; a kernel still running (a stop while its cell ran) is killed."""
        self.stop.set()
        self.bar.close()
        if self.shown and not self.live:
            tqdm.write(tqdm.format_meter(self.started, self.total, time.monotonic() - self.began,
                                         prefix=self.description, bar_format=LINE), file=sys.stderr)
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.process.pid, signal.SIGKILL) if ON_POSIX else self.process.kill()
            self.process.wait()
        self.kernel_log.close()

    def kernel_manager_class(self):
        from jupyter_client.localinterfaces import localhost
        from jupyter_client.manager import AsyncKernelManager
        from traitlets import default

        watch = self

        class WatchedKernelManager(AsyncKernelManager):
            """On POSIX, kernels reached over local sockets (IPC, files in the temporary folder) rather than TCP:
            nothing to encrypt, so no 'Kernel is running over TCP without encryption' warning per notebook.
            Keeps the kernel's process to tell how it ended; a kernel stopped in a running cell is killed at once
            (asked to shut down, it fails on the cell's reply and says so in a traceback)."""

            @default("transport")
            def _local_sockets(self) -> str:
                return "ipc" if ON_POSIX else "tcp"

            @default("ip")
            def _socket_prefix(self) -> str:  # short, under the 104-byte socket path limit; its files go at shutdown
                return str(Path(tempfile.gettempdir()) / f"aimonk-{uuid.uuid4().hex[:12]}") if ON_POSIX else localhost()

            async def start_kernel(self, **options):
                await super().start_kernel(**{"stderr": watch.kernel_log, **options})
                watch.process = getattr(self.provisioner, "process", None)

            async def shutdown_kernel(self, now: bool = False, restart: bool = False):
                await super().shutdown_kernel(now=now or watch.busy, restart=restart)

        return WatchedKernelManager

    def ended(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def where(self) -> str:
        """The running cell as `cell k/M ('its first line')`, k counting the cells the kernel ran."""
        if self.cell is None:
            return "before its first cell"
        lines = self.cell.source.strip().splitlines()
        return f"cell {self.started}/{self.total} ({lines[0] if lines else ''!r})"

    def how_the_kernel_ended(self, out_of_memory_kills_before: int | None) -> str:
        """How the kernel's process ended, with the last line it wrote itself (ipykernel's log, a failed start)."""
        self.kernel_log.seek(0)
        lines = [line for line in self.kernel_log.read().decode(errors="replace").splitlines() if line.strip()]
        return self.exit_status(out_of_memory_kills_before) + (f" (its last line: {lines[-1].strip()!r})"
                                                                if lines else "")

    def exit_status(self, out_of_memory_kills_before: int | None) -> str:
        code = self.process.poll() if self.process is not None else None
        if code is None:
            return "the kernel died"
        if code >= 0:
            return f"the kernel exited with code {code}"
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        if -code == getattr(signal, "SIGKILL", None):
            after = out_of_memory_kills()
            if None not in (after, out_of_memory_kills_before) and after > out_of_memory_kills_before:
                return "the kernel was killed by SIGKILL: the system ran out of memory (its out-of-memory killer ran)"
            return "the kernel was killed by SIGKILL (by another process, or the system's out-of-memory killer)"
        return f"the kernel was stopped by {name}"


def out_of_memory_kills() -> int | None:
    """How many processes Linux's out-of-memory killer has killed since boot (None where it is not told)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/vmstat").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    return None


def code_cells(notebook, parameters: dict) -> int:
    """How many cells the kernel will run: the code cells that hold code, and papermill's injected parameters."""
    return sum(1 for cell in notebook.cells if cell.cell_type == "code" and cell.source.strip()
               and "injected-parameters" not in cell.metadata.get("tags", [])) + bool(parameters)


class LinesAboveBar:
    """Lines shown above the notebook's line as they come, each whole and at once (stdout flushed: a pipe or a
    file gets them in order): what the cells write to stderr (warnings; papermill copies it here), and the aimonk
    logger's lines of a kernel (run_lines_shown)."""

    def __init__(self):
        self.partial = ""

    def write(self, text: str) -> None:
        *lines, self.partial = (self.partial + text).split("\n")
        for line in lines:
            if line.strip():
                tqdm.write(f"  {line}", file=sys.stdout)
                sys.stdout.flush()

    def flush(self) -> None:
        pass


@contextlib.contextmanager
def run_lines_shown(shown: bool, every: float = 0.5):
    """Within it, a notebook's kernel also logs the aimonk logger's lines into a file ($AIMONK_LOG_FILE, which
    the kernel inherits), which a thread here follows and shows above the bar: a training cell's lines as they
    come, each a log record, none picked out of the printed text."""
    if not shown:
        yield
        return
    handle, path = tempfile.mkstemp(prefix="aimonk-log-", suffix=".txt")
    os.close(handle)
    before, done, lines = os.environ.get(LOG_FILE_VARIABLE), threading.Event(), LinesAboveBar()
    os.environ[LOG_FILE_VARIABLE] = path

    def follow() -> None:
        with open(path, encoding="utf-8", errors="replace") as log:
            while True:
                finished = done.is_set()
                lines.write(log.read())
                if finished:
                    return
                done.wait(every)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    try:
        yield
    finally:
        done.set()
        follower.join()
        if before is None:
            del os.environ[LOG_FILE_VARIABLE]
        else:
            os.environ[LOG_FILE_VARIABLE] = before
        Path(path).unlink(missing_ok=True)
