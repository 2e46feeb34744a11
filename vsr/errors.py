"""The errors a user can cause and fix.

Every one of them is a `VsrError`: the command line prints its message on one line and exits non-zero, without a
traceback. Like PyAV's errors, each also subclasses the matching built-in, so `except ValueError` keeps working.
This module imports nothing of vsr's, so that every layer (models, pipelines, training) can raise these errors.
"""

import difflib
import errno
from collections.abc import Iterable


class VsrError(Exception):
    """Base class of the errors that are the user's to fix. The message is one line that says what and where."""

    exit_code = 1


class InputError(VsrError, ValueError):
    """An input file is missing, unreadable, or not what it claims to be."""

    exit_code = 2


class OptionError(VsrError, ValueError):
    """An option has a value outside the allowed ones."""

    exit_code = 2


class EncoderSettingsError(OptionError):
    """A video encoder refused the settings it was given (a tune, profile or option it lacks). Its own class, so that
    where codec "auto" chose the encoder, the error can say so (`upscale.auto_codec_named`)."""


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


class Cancelled(Exception):
    """The caller stopped the run (`upscale_video(..., cancel=event)`, the event set from another thread). Not a
    user's error, so not a VsrError: an application that cancels need not report it as a failure. Like an error, it
    leaves no unfinished file under the output's name."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """" (did you mean total_iters?)" where `word` is a near miss of one of `choices` (a typo), else nothing: the list
    of every choice that such a message goes on to give hides the one meant."""
    close = difflib.get_close_matches(word.lower(), list(choices), n=1, cutoff=0.8)
    return f" (did you mean {close[0]}?)" if close else ""


def out_of_space(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, is a full disk or an exhausted quota: every file written
    after it fails the same way, so a run of many inputs stops there. (EFBIG is not: a file too large for its file
    system is that input's alone.)"""
    seen = set()
    while error is not None and id(error) not in seen:  # (a chain can loop back)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False
