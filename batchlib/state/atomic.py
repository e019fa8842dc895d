"""The one atomic-write primitive of batchlib.

Whole files (status JSON, ledger snapshots, CSV, PNG, ...) are written to a
temporary sibling and renamed over the target with :func:`os.replace`, so a
reader (or a process killed at any instant) sees either the old file or the
new one, never a half-written one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

#: Prefix of every temporary file batchlib creates; matching skips these names.
TMP_PREFIX = ".batchlib-tmp-"


def temporary_sibling(path: str | os.PathLike) -> Path:
    """Return a unique hidden path next to ``path`` that keeps its extension.

    Keeping the extension matters for writers that choose the format from it
    (``.png``, ``.h5``, ...).

    Examples
    --------
    >>> str(temporary_sibling("/data/a.png")).startswith("/data/.batchlib-tmp-")
    True
    >>> temporary_sibling("/data/a.png").suffix
    '.png'
    """
    path = Path(path)
    return path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}-{path.name}")


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable; not every file system allows it.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_path(path: str | os.PathLike) -> None:
    """Remove a file or a folder tree; a missing path is not an error."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move ``src`` over ``dst`` atomically; folders replace folders too.

    ``os.replace`` cannot put a folder over a non-empty folder, so an existing
    folder is first renamed to a temporary sibling and removed afterwards.
    """
    src, dst = Path(src), Path(dst)
    if src.is_dir() and dst.is_dir():
        old = temporary_sibling(dst)
        os.replace(dst, old)
        os.replace(src, dst)
        remove_path(old)
    else:
        os.replace(src, dst)
    _fsync_dir(dst.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; on success rename it to ``path``.

    On an exception the temporary file (or folder) is removed and ``path`` is
    left as it was.

    Examples
    --------
    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> open(target).read()
    'hello'
    """
    tmp = temporary_sibling(path)
    try:
        yield tmp
    except BaseException:
        remove_path(tmp)
        raise
    replace(tmp, path)


def atomic_write(path: str | os.PathLike, data: bytes | str, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temporary sibling, then rename).

    Parameters
    ----------
    path : path-like
        The file to write.
    data : bytes or str
        The whole content; ``str`` is encoded as UTF-8.
    fsync : bool
        Flush the data to disk before the rename, so the new content survives
        a power cut as well as a killed process.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    except OSError as err:  # name the file meant, not its temporary sibling
        raise OSError(err.errno, err.strerror, os.fspath(path)) from err
