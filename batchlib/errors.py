"""Errors raised by batchlib.

Every error derives from :class:`BatchlibError`, so ``except BatchlibError``
catches anything the library raises on purpose. Where a builtin exception
fits, the error mixes it in (a bad option is also a ``ValueError``), so code
that already catches builtins keeps working. Messages say what was expected,
what was found, and what to do.
"""

from __future__ import annotations


class BatchlibError(Exception):
    """Base class of all errors raised by batchlib."""


class ConfigError(BatchlibError, ValueError):
    """A bad option or configuration; the message names the option.

    Workflow scripts and the ``batchlib`` command exit with code 2 on it.
    """


class FolderLockedError(BatchlibError, RuntimeError):
    """Another workflow holds the folder lock (exit code 75)."""

    def __init__(self, message: str, holder: dict | None = None):
        super().__init__(message)
        self.holder = holder or {}


class LedgerError(BatchlibError, RuntimeError):
    """The ledger in ``batchlib/`` cannot be read or written."""


class ContainerError(BatchlibError, OSError):
    """A container (h5/n5/zarr) cannot be opened or lacks what is needed."""


class InvalidInputError(BatchlibError, ValueError):
    """An input file is not valid for a job; the message gives the reason.

    Raised (or its reason returned) by ``validate_input``, and raised by
    ``run`` when the trouble shows only once the pixels are read (a truncated
    file): the file is then recorded as invalid, not failed.

    Parameters
    ----------
    message : str
        What is wrong, naming the file.
    recheck : bool
        The reason lies outside the file's content (a permission, a missing
        link target, the rest of the plate): the verdict is revisited on every
        run. Otherwise only once the file changes.
    """

    def __init__(self, message: str, recheck: bool = False):
        super().__init__(message)
        self.recheck = recheck


class ResourceError(BatchlibError, OSError):
    """The machine lacks what a run needs: disk space, quota, file handles, a writable folder.

    The run stops with one line naming the path and what to do, releases its
    lock and records no unfinished work (exit code 1).
    """


class OutputError(BatchlibError, RuntimeError):
    """A job finished without producing a valid output."""


class RemoteError(BatchlibError, OSError):
    """An S3 request failed (the message names the bucket and key); rerunning continues the transfer."""


class RemoteUnreachableError(RemoteError):
    """The S3 endpoint did not answer, even after retries with backoff."""


class RemoteAccessError(RemoteError):
    """The bucket is missing, or the credentials are absent, rejected or not allowed (exit code 2)."""


class UnsafePathError(BatchlibError, ValueError):
    """A file name or object key would reach outside the plate folder or the prefix."""
