"""The error contract: library code raises these; the CLI prints ``Error: <message>`` and exits.

Every message says what was wrong and, where it can, how to fix it, on one line.
"""

from __future__ import annotations

import errno
from pathlib import Path

EXIT_OK = 0
EXIT_ALERTS = 1  # alerts at or above --fail-on
EXIT_USAGE = 2  # bad usage, bad config or unreadable input
# A bug in logscan (an unexpected exception): BSD sysexits' EX_SOFTWARE, far from 1 (alerts) and
# 2 (Click's own usage errors), so a crash can never pass for a verdict.
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)


class LogscanError(Exception):
    """Base class of every error logscan reports to a user. ``exit_code`` is what the CLI returns."""

    exit_code = EXIT_USAGE


class InputError(LogscanError):
    """The run path does not exist, or holds nothing logscan can read."""


class ConfigError(LogscanError):
    """A configuration file or option is invalid (unknown key, wrong type, bad value)."""


class ModelUnavailableError(LogscanError):
    """No embedding model could be loaded offline."""


class DeviceUnavailableError(ModelUnavailableError):
    """The embedding model loads, but not on the device the user named (``--device``)."""


class OutputError(LogscanError):
    """An output file could not be written (a full disk, a read-only folder)."""


def output_error(exc: OSError, out_dir: Path) -> OutputError:
    """The one-line error for an output that cannot be written (exit 2): what, where, and a hint."""
    where = exc.filename or out_dir
    if not exc.errno and "no space left" in str(exc.strerror).lower():
        exc = OSError(errno.ENOSPC, str(exc.strerror), exc.filename)
    hint = {
        errno.ENOSPC: "free some space or write elsewhere with -o",
        errno.EDQUOT: "free some space or write elsewhere with -o",
        errno.EACCES: "no permission to write there; write elsewhere with -o",
        errno.EROFS: "the file system is read-only; write elsewhere with -o",
    }.get(exc.errno or 0, "a file or folder is in the way; remove it or write elsewhere with -o")
    return OutputError(f"cannot write {where}: {exc.strerror or exc}; {hint}")
