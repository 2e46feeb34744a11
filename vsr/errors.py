"""The errors a user can cause and fix.

Every one of them is a `VsrError`: the command line prints its message on one line and exits non-zero, without a
traceback. Like PyAV's errors, each also subclasses the matching built-in, so `except ValueError` keeps working.
This module imports nothing, so that every layer (models, pipelines, training) can raise these errors.
"""


class VsrError(Exception):
    """Base class of the errors that are the user's to fix. The message is one line that says what and where."""

    exit_code = 1


class InputError(VsrError, ValueError):
    """An input file is missing, unreadable, or not what it claims to be."""

    exit_code = 2


class OptionError(VsrError, ValueError):
    """An option has a value outside the allowed ones."""

    exit_code = 2


class ModelError(VsrError, ValueError):
    """A model name is unknown, or a checkpoint file is corrupt or of an unsupported architecture."""

    exit_code = 3


class WeightsUnavailableError(ModelError):
    """A model's weights are not cached and cannot be fetched (offline, or the download failed)."""


class OutputError(VsrError, OSError):
    """The output cannot be written: it exists, the folder is not writable, the disk is full."""

    exit_code = 4


class Terminated(KeyboardInterrupt):
    """SIGTERM (what `kill`, job schedulers and `docker stop` send), raised where Ctrl-C raises KeyboardInterrupt, so
    that it stops as cleanly: no unfinished file left under an output's name, a batch's running jobs handed back.
    Not a user's error: the command line exits 143 (128 + SIGTERM), as a shell reports it."""
