"""Progress as vsr shows it while it works: tqdm's bar on a terminal, a line now and then in a log file.

On a terminal, the bar is redrawn in place and vsr's log lines are written above it (tqdm's `logging_redirect_tqdm`):
written straight to stderr, a warning went on after the bar, on its line. Where stderr is no terminal (`vsr ... 2>
log`, a service's journal), tqdm's updates, each overwriting the last with '\\r', would make one long unreadable line
of the log: it gets a line of its own every `LOG_SECONDS` instead, as rclone writes its stats, and none for work
shorter than that. The lines of worker processes reach the same place through `relay_logs` / `log_to_driver`.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import logging.handlers
import sys
import threading
from queue import Empty

LOG_SECONDS = 60.0  # how often a progress line is written where stderr is no terminal

# A progress line of a log file: what is done of how much, how fast, and how long the rest takes at that speed.
_LOG_LINE = "vsr: {n_fmt}/{total_fmt} {unit}s ({percentage:.0f}%) in {elapsed}, {rate_fmt}, {remaining} left"


class _LogLines:
    """A file for tqdm that writes each of its updates as a line of stderr (the clearing of the bar, blank, not)."""

    def write(self, text: str) -> None:
        line = " ".join(text.split())  # (tqdm pads its rates to 5 characters, and clears the bar with spaces)
        if line:
            sys.stderr.write(line + "\n")

    def flush(self) -> None:
        sys.stderr.flush()


@contextlib.contextmanager
def progress_bar(total: int | None, *, initial: int = 0, unit: str = "frame", shown: bool = True,
                 leave: bool = False):
    """A tqdm bar of `total` units, `initial` of them done before it started (by an earlier run: its rate and time
    left count only what this one does), with vsr's log lines written above it; see the module doc. `shown`: False
    shows nothing (the bar still counts). `leave`: the bar stays on the terminal once closed."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from vsr.pipelines.runner import ctrl_c_held_back

    # A Ctrl-C or SIGTERM raised inside tqdm's __init__ left a bar without its attributes, whose __del__ printed a
    # traceback at exit (seen under load, once in a run of the suite): held back until the bar is whole.
    with ctrl_c_held_back():
        if shown and not sys.stderr.isatty():
            bar = tqdm(total=total, initial=initial, unit=unit, file=_LogLines(), bar_format=_LOG_LINE,
                       mininterval=LOG_SECONDS, delay=LOG_SECONDS, leave=leave)
        else:
            bar = tqdm(total=total, initial=initial, unit=unit, disable=not shown, dynamic_ncols=True, leave=leave)
    with bar, logging_redirect_tqdm() if shown else contextlib.nullcontext():
        yield bar


def log_to_driver(queue, level: int, logger_levels: dict[str, int] | None = None) -> None:
    """In a worker process: send what it logs at `level` or above (and `logger_levels`: the levels of loggers set
    apart from it) to its driver's `relay_logs`, which writes it above the driver's bar. Written by the worker to
    the same terminal, it went on after the bar, on its line."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    root.addHandler(logging.handlers.QueueHandler(queue))
    root.setLevel(level)
    logging.getLogger("vsr").setLevel(level)
    for name, logger_level in (logger_levels or {}).items():
        logging.getLogger(name).setLevel(logger_level)


@contextlib.contextmanager
def relay_logs(queue):
    """Log in this process, as its own, what worker processes send to `queue` (`log_to_driver`), until the block
    ends; what they sent before it ends is logged first. The end is a flag, not an item put on the queue: a put
    starts the queue's feeder thread, and a Ctrl-C as it started left a thread that the process waited for at exit,
    for ever (seen at the end of a batch)."""
    ended = threading.Event()

    def relay() -> None:
        while True:
            try:
                record = queue.get(timeout=0.1)
            except Empty:
                if ended.is_set():
                    return
                continue
            except Exception:  # noqa: BLE001 - a worker killed as it wrote left the queue short: nothing more to say
                return
            logging.getLogger(record.name).handle(record)

    # In a copy of this context: the segment workers' warnings of a batch's job are that job's (`warnings_kept`)
    thread = threading.Thread(target=contextvars.copy_context().run, args=(relay,), name="vsr-worker-logs", daemon=True)
    thread.start()
    try:
        yield
    finally:
        ended.set()
        thread.join(timeout=5)
