"""Killing a running `vsr` command at a chosen moment, as a crash or `kill -9` would."""

import os
import signal
import subprocess
import time
from collections.abc import Callable


def kill_when(command: list[str], ready: Callable[[], bool], what: str, timeout: float = 300) -> None:
    """Start `command` in a session of its own, wait until `ready()` is true while it runs, then SIGKILL the whole
    session (its worker processes too). `what` names the awaited moment in the message if the command ends first."""
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert process.poll() is None, f"the command ended before {what}:\n{process.stderr.read()}"
            assert time.monotonic() < deadline, f"no {what} after {timeout} s"
            time.sleep(0.01)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
