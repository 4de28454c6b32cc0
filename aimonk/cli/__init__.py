"""Command line: `aimonk summary|train|evaluate|tune|predict|explain|export|notebooks|backbones|cache|demo` (also `python -m
aimonk`). It parses options and reports; what a command does lives in aimonk.workflows and the layers below."""
from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import warnings

from aimonk.cli.commands import COMMANDS, INTERRUPTED, TERMINATED
from aimonk.cli.parser import build_parser, config_from_args, option_flag
from aimonk.progress import LOGGER, BarFriendlyHandler

__all__ = ["main", "build_parser", "config_from_args", "option_flag"]


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings(), sigterm_as_ctrl_c() as terminated, lines_on_stdout():
        warnings.simplefilter("always", UserWarning)  # the caller's settings come back after
        warnings.showwarning = show_warning
        code = run_command(args)
    return TERMINATED if code == INTERRUPTED and terminated else code


@contextlib.contextmanager
def lines_on_stdout():
    """A command's progress lines (the aimonk logger's INFO) on stdout, beside its bars; as before after."""
    handler, level, propagate = BarFriendlyHandler("stdout"), LOGGER.level, LOGGER.propagate
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False  # shown once, by this handler, whatever the root logger does
    try:
        yield
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(level)
        LOGGER.propagate = propagate


@contextlib.contextmanager
def sigterm_as_ctrl_c():
    """SIGTERM (a scheduler's or `kill`'s stop) handled as Ctrl-C: the run says what it kept, exit code 143.
    Yields a list that holds the signal once one came."""
    received: list[int] = []

    def stop(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield received
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=file or sys.stderr)


def run_command(args) -> int:
    try:
        return COMMANDS[args.run](args)
    except BrokenPipeError:  # the reader went away (`aimonk backbones | head`): nothing more to say to it
        sys.stdout = None
        return 0
    except (ValueError, OSError, RuntimeError) as error:
        print(f"aimonk {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stopped:  # training says what it kept; anything else stops without a traceback
        print(f"aimonk {args.command}: {str(stopped) or 'interrupted'}", file=sys.stderr)
        return INTERRUPTED


def one_line(error: Exception) -> str:
    """An error as one line; OS errors name their file."""
    if isinstance(error, OSError) and not isinstance(error, FileNotFoundError) and error.filename:
        return f"{error.filename}: {error.strerror or type(error).__name__}"
    return " ".join(str(error).split()) or type(error).__name__
