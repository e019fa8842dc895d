"""What an operating-system error means for a run: the input's fault, or the machine's.

Two kinds of ``OSError`` matter to batchlib:

- reading an input fails because of something outside the file's content (a
  permission, a symbolic link whose target is gone): the input is invalid, and
  the verdict is checked again on every run, because fixing it (``chmod``,
  restoring the target) does not change the file's size or mtime;
- the machine lacks what the run needs (disk space, quota, file handles, a
  writable file system): no file is to blame, so the run stops with one line
  saying where and what to do, instead of failing file after file.
"""

from __future__ import annotations

import errno
import os

from .errors import InvalidInputError, ResourceError

#: errno -> (what happened, what to do), for errors that stop a run.
RESOURCE_ERRNOS = {
    errno.ENOSPC: ("no space left on device", "free space and rerun"),
    errno.EDQUOT: ("disk quota exceeded", "free space or raise the quota, and rerun"),
    errno.EROFS: ("read-only file system", "make the plate folder writable and rerun"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n) or use fewer workers, and rerun"),
    errno.ENFILE: ("too many open files on this machine", "close other programs or raise the limit, and rerun"),
}

#: errnos of reading an input that a fix outside the file's content can cure.
RECHECK_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.ESTALE})


def os_errno(err: BaseException) -> int | None:
    """The errno of ``err`` or of the OSError it was raised from (h5py and zarr wrap them).

    Examples
    --------
    >>> os_errno(OSError(28, "No space left on device"))
    28
    >>> os_errno(ValueError("x")) is None
    True
    """
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno is not None:
            return err.errno
        text = str(err)
        for number in RESOURCE_ERRNOS:  # h5py: "... errno = 28, error message = 'No space left on device'"
            if f"errno = {number}," in text or os.strerror(number) in text:
                return number
        err = err.__cause__ or err.__context__
    return None


def resource_error(err: BaseException, path: str | None = None) -> ResourceError | None:
    """A :class:`ResourceError` naming ``path`` if ``err`` means the machine lacks something, else None.

    Examples
    --------
    >>> str(resource_error(OSError(28, "No space left on device"), "/plate/a.h5"))
    'no space left on device while writing /plate/a.h5: free space and rerun'
    >>> resource_error(PermissionError(13, "Permission denied")) is None
    True
    """
    number = os_errno(err)
    if number not in RESOURCE_ERRNOS:
        return None
    what, todo = RESOURCE_ERRNOS[number]
    where = path or getattr(err, "filename", None)
    return ResourceError(f"{what} while writing {where}: {todo}" if where else f"{what}: {todo}")


def input_error(err: OSError, path: str) -> InvalidInputError:
    """An :class:`InvalidInputError` for an input that could not be opened or read.

    Examples
    --------
    >>> e = input_error(PermissionError(13, "Permission denied"), "/raw/a.tiff")
    >>> str(e), e.recheck
    ('a.tiff cannot be read: permission denied (fix its permissions; it is checked again on every run)', True)
    """
    name = os.path.basename(path)
    if os.path.islink(path) and not os.path.exists(path):
        target = os.readlink(path)
        return InvalidInputError(
            f"{name} is a symbolic link to {target}, which does not exist (it is checked again on every run)",
            recheck=True,
        )
    if err.errno in RECHECK_ERRNOS:
        reason = (err.strerror or str(err)).lower()
        todo = "fix its permissions" if err.errno in (errno.EACCES, errno.EPERM) else "restore it"
        return InvalidInputError(f"{name} cannot be read: {reason} ({todo}; it is checked again on every run)", True)
    if err.errno == errno.EISDIR:
        return InvalidInputError(f"{name} is a folder, not an image file")
    return InvalidInputError(f"{name} cannot be read: {type(err).__name__}: {err}")
