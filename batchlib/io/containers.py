"""``open_file``: one h5py-like API over every container backend.

Each backend is a function ``(path, mode) -> file object`` registered for its
file extensions; jobs call :func:`open_file` and never a backend directly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ContainerError


def _open_h5(path: str, mode: str) -> Any:
    import h5py

    return h5py.File(path, mode)


#: Backends by file extension.
BACKENDS: dict[str, Callable[[str, str], Any]] = {".h5": _open_h5, ".hdf5": _open_h5, ".hdf": _open_h5}
CONTAINER_EXTENSIONS = tuple(BACKENDS)


def is_container(path: str | os.PathLike) -> bool:
    """True if ``path`` has the extension of a container backend."""
    return Path(path).suffix.lower() in BACKENDS


def open_file(path: str | os.PathLike, mode: str = "a") -> Any:
    """Open a container with the backend its extension names.

    Parameters
    ----------
    path : path-like
        ``.h5``, ``.hdf5`` or ``.hdf`` file.
    mode : str
        ``"r"`` read only, ``"r+"`` read/write (must exist), ``"a"``
        read/write (create if missing), ``"w"`` create (truncate).

    Returns
    -------
    An h5py-like file object, usable as a context manager.

    Raises
    ------
    ContainerError
        If the extension is unknown or the file cannot be opened (missing,
        truncated, not a container); the message names the file.
    """
    path = os.fspath(path)
    suffix = Path(path).suffix.lower()
    backend = BACKENDS.get(suffix)
    if backend is None:
        raise ContainerError(
            f"cannot open {path}: unknown container extension {suffix!r}; expected one of {', '.join(BACKENDS)}"
        )
    try:
        return backend(path, mode)
    except ContainerError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        raise ContainerError(f"cannot open container {path} (mode {mode!r}): {err}") from err
