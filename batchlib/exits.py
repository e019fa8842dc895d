"""Exit codes of workflow scripts and the ``batchlib`` command, and the call that turns a run into one.

0 all done; 1 some files failed or were invalid and were not ignored, or a
resource ran out (a full disk); 2 bad usage or configuration; 75 folder
locked (``EX_TEMPFAIL``: try again later).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import BatchlibError, ConfigError, FolderLockedError, RemoteAccessError

if TYPE_CHECKING:
    from .workflow import JobResult

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 75


def error_exit_code(err: BatchlibError) -> int:
    """Print ``err`` as one line on stderr and return its exit code.

    75 locked; 2 bad usage or configuration (including a missing bucket or
    refused credentials: rerunning will not help); else 1.
    """
    print(f"batchlib: {err}", file=sys.stderr)
    if isinstance(err, FolderLockedError):
        return EXIT_LOCKED
    return EXIT_USAGE if isinstance(err, (ConfigError, RemoteAccessError)) else EXIT_FAILED


def run_and_exit_code(run: Callable[[], dict[str, JobResult]]) -> int:
    """Call ``run`` (which runs a workflow) and return the process exit code.

    Errors become their exit code and a one-line message on stderr, never a
    traceback: a locked folder 75, a bad option 2, a full disk (or another
    missing resource) or an unreadable ledger 1. The process, which is about to exit, then skips
    Python's final garbage collection
    (:func:`batchlib.executors.skip_final_collection`).
    """
    from .executors import skip_final_collection
    from .workflow import exit_code

    skip_final_collection()
    try:
        return exit_code(run())
    except BatchlibError as err:  # a locked folder, a bad option, a full disk, an unreadable ledger
        return error_exit_code(err)
