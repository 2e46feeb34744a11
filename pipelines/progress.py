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
import dataclasses
import logging
import logging.handlers
import sys
import threading
from collections.abc import Callable
from queue import Empty

LOG_SECONDS = 60.0  # how often a progress line is written where stderr is no terminal

# A progress line of a log file: what is done of how much, how fast, and how long the rest takes at that speed, and
# the bar's postfix where it has one (", 3/12 jobs": tqdm puts the comma before it).
_LOG_LINE = "vsr: {n_fmt}/{total_fmt} {unit}s ({percentage:.0f}%) in {elapsed}, {rate_fmt}, {remaining} left{postfix}"

# The warnings said in the API call running in this context (`said_once_per_call`); None outside any: once a process.
_said_in_call: contextvars.ContextVar[set | None] = contextvars.ContextVar("vsr_said_in_call", default=None)
_said_in_process: set = set()


@contextlib.contextmanager
def said_once_per_call():
    """Each warning said once in the block, and again in a later block: a video in segments opens a decoder and a
    writer per segment, and says each warning once all the same, while a service that upscales upload after upload
    (one path reused, or the same settings) hears each upload's. A block inside another is part of it; the threads of
    the pipeline run in their caller's context (`runner.run_pipeline`). Outside any block (a worker process, whose
    driver said the video's warnings), each is said once a process, as before."""
    if _said_in_call.get() is not None:
        yield
        return
    token = _said_in_call.set(set())
    try:
        yield
    finally:
        _said_in_call.reset(token)


def first_saying(key) -> bool:
    """Whether the warning `key` is said for the first time in this call (`said_once_per_call`), or in this process
    outside any; it counts as said from now on."""
    said = _said_in_call.get()
    if said is None:
        said = _said_in_process
    if key in said:
        return False
    said.add(key)
    return True


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
                 leave: bool = False, postfix: str | None = None):
    """A tqdm bar of `total` units, `initial` of them done before it started (by an earlier run: its rate and time
    left count only what this one does), with vsr's log lines written above it; see the module doc. `shown`: False
    shows nothing (the bar still counts). `leave`: the bar stays on the terminal once closed. `postfix`: said after
    the rate ("3/12 jobs"; `set_postfix_str` changes it)."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from vsr.pipelines.runner import ctrl_c_held_back

    # A Ctrl-C or SIGTERM raised inside tqdm's __init__ left a bar without its attributes, whose __del__ printed a
    # traceback at exit (seen under load, once in a run of the suite): held back until the bar is whole.
    with ctrl_c_held_back():
        if shown and not sys.stderr.isatty():
            bar = tqdm(total=total, initial=initial, unit=unit, file=_LogLines(), bar_format=_LOG_LINE,
                       mininterval=LOG_SECONDS, delay=LOG_SECONDS, leave=leave, postfix=postfix)
        else:
            bar = tqdm(total=total, initial=initial, unit=unit, disable=not shown, dynamic_ncols=True, leave=leave,
                       postfix=postfix)
    with bar, logging_redirect_tqdm() if shown else contextlib.nullcontext():
        yield bar


# A damaged film can warn of a decoding error at every packet: the journal keeps the first ones, and counts the rest.
WARNINGS_KEPT = 100


@dataclasses.dataclass
class KeptWarnings:
    """The warnings of one run, as `warnings_kept` gathers them: each text once, the first WARNINGS_KEPT kept."""

    messages: list[str] = dataclasses.field(default_factory=list)
    count: int = 0  # of those said (a repeat of one kept counts once)

    def add(self, text: str) -> None:
        if text in self.messages:
            return
        self.count += 1
        if len(self.messages) < WARNINGS_KEPT:
            self.messages.append(text)


# Where the warnings of the work running in this context go: the KeptWarnings of each `warnings_kept` block it runs in
# (a batch job's, and the `upscale_video` call inside it). A context variable, not a handler per job: the video jobs
# of a Ray driver (or a service's uploads) run side by side in threads of one process, each in a context of its own,
# and the pipeline's decoder and encoder threads run in their caller's (`runner.run_pipeline`).
_kept_here: contextvars.ContextVar[tuple[KeptWarnings, ...]] = contextvars.ContextVar("vsr_warnings_kept",
                                                                                     default=())


class _Kept(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        for kept in _kept_here.get():
            kept.add(record.getMessage())
        if logging.lastResort is not None and not self._others_handle(record):
            logging.lastResort.handle(record)  # (as Python does where logging is not set up: this one hid it)

    def _others_handle(self, record: logging.LogRecord) -> bool:
        """Whether a handler besides this one gets `record` (Python's last resort prints where none does)."""
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            if any(handler is not self for handler in logger.handlers):
                return True
            logger = logger.parent if logger.propagate else None
        return False


_KEPT_HANDLER = _Kept()


@contextlib.contextmanager
def warnings_kept():
    """The warnings vsr logs meanwhile in this context (this thread, and the threads of the pipeline it runs),
    gathered into the KeptWarnings it yields, and into those of the blocks around it. Only those made: a logger set
    above WARNING makes none (`batch_workers.show_from` keeps them made)."""
    logger = logging.getLogger("vsr")
    if _KEPT_HANDLER not in logger.handlers:
        logger.addHandler(_KEPT_HANDLER)
    kept = KeptWarnings()
    token = _kept_here.set((*_kept_here.get(), kept))
    try:
        yield kept
    finally:
        _kept_here.reset(token)


def frames_counted(bar, on_progress: Callable[[int, int | None], None] | None = None,
                   on_frames: Callable[[int], None] | None = None) -> Callable[[int], None]:
    """What counts frames upscaled into `bar` (a `progress_bar`), and tells of them: `on_frames(count)` of each count
    (a batch's job: the batch's own bar counts them, in the driver), and `on_progress(frames done, frames in all)`
    of the bar's counts after each (an API caller's own progress display). (Counted here: a bar not shown counts
    nothing.)"""
    done = bar.n  # (its `initial`: frames an earlier run made)

    def frames_done(count: int) -> None:
        nonlocal done
        done += count
        bar.update(count)
        if on_frames is not None:
            on_frames(count)
        if on_progress is not None:
            on_progress(done, bar.total)

    return frames_done


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
