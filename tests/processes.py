"""Running the `vsr` command as its own process, as a user does, and killing one at a chosen moment, as a crash or
`kill -9` would."""

import atexit
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

VSR = [sys.executable, "-m", "vsr.cli"]

# Most of a short `vsr` run is spent importing torch (2.5 s of a 3.2 s run on a 2-core machine), and the suite runs
# the command over a hundred times. A fork server imports these once (and runs nothing, so no thread or OpenMP pool
# is forked); each command is a fresh fork of it, with its own arguments, environment, working folder, standard
# streams and exit status, as from a new interpreter that has already imported these modules.
PRELOADED = ["torch", "av", "numpy", "typer", "vsr.cli", "vsr.api", "vsr.pipelines.batch"]


def _main_of_a_fresh_process(args: list[str], env: dict[str, str], cwd: str, stdout: str, stderr: str) -> None:
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, stdout), (2, stderr)):
        file = os.open(path, os.O_WRONLY)
        os.dup2(file, fd)
        os.close(file)
    sys.argv = ["vsr", *args]
    from vsr.cli import main

    try:
        main()
    finally:
        atexit._run_exitfuncs()  # a process that ends runs these; a multiprocessing child does not by itself


def run_vsr(*args, timeout: float = 600, check: bool = False, env: dict[str, str] | None = None):
    """`subprocess.run([*VSR, *args], capture_output=True, text=True)`, forked from a server that has torch loaded.
    `env` adds to the test's environment. Returns a CompletedProcess; `check` raises with the command's stderr."""
    args = [str(arg) for arg in args]
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOADED)
    with tempfile.TemporaryDirectory(prefix="vsr-run-") as streams:
        stdout, stderr = Path(streams, "stdout"), Path(streams, "stderr")
        stdout.touch()
        stderr.touch()
        process = context.Process(target=_main_of_a_fresh_process,
                                  args=(args, {**os.environ, **(env or {})}, os.getcwd(), str(stdout), str(stderr)))
        process.start()
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired(["vsr", *args], timeout)
        result = subprocess.CompletedProcess(["vsr", *args], process.exitcode, stdout.read_text(errors="replace"),
                                             stderr.read_text(errors="replace"))
    if check and result.returncode != 0:
        raise AssertionError(f"vsr {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


# How long a test waits on a moment of the work it watches before calling it a hang. Tests wait on conditions, not
# on time: the suite runs beside other work (loads of 10 to 28 on 2 cores), where what takes seconds on a quiet
# machine takes minutes (a Ray batch's first segment: 9.5 s quiet, 233 s at a load of 14).
HANG_SECONDS = 900


def wait_until(ready: Callable[[], bool], what: str, process: subprocess.Popen | None = None,
               timeout: float = HANG_SECONDS) -> None:
    """Poll until `ready()` is true. Fails, naming the awaited moment `what`, if `process` (where given) ends first,
    with its stderr where that is a pipe, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        # (looked at before ready(): a command that reached the moment and ended between the two looks failed)
        running = process is None or process.poll() is None
        if ready():
            return
        assert running, f"the command ended (exit {process.returncode}) before {what}:\n" + (
            process.stderr.read() if process.stderr else "")
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.01)


def kill_when(command: list[str], ready: Callable[[], bool], what: str, timeout: float = HANG_SECONDS) -> None:
    """Start `command` in a session of its own, wait until `ready()` is true while it runs, then SIGKILL the whole
    session (its worker processes too). `what` names the awaited moment in the message if the command ends first."""
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    try:
        wait_until(ready, what, process, timeout)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
