"""Warnings raised while a file is processed, collected so they can be reported with its name.

numpy's ``RuntimeWarning`` or tifffile's "invalid page offset" name no file;
printed as they come, with several files in flight, nobody can tell which
file they are about. :func:`captured_warnings` collects them instead; the
worker attaches them to the file's result and the driver logs each one with
the file's name.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

#: Libraries that report trouble with a file through :mod:`logging` rather than :mod:`warnings`.
LIBRARY_LOGGERS = ("tifffile",)


#: Messages for the developers of the libraries we call, not about the files.
_FOR_DEVELOPERS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


class _Collect(logging.Handler):
    """Appends the library warnings logged to the innermost capture's list (one handler for all)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.targets: list[list[str]] = []
        self.propagate: dict[str, bool] = {}  # of the library loggers, while attached

    def emit(self, record: logging.LogRecord) -> None:
        if self.targets:
            self.targets[-1].append(f"{record.name}: {record.getMessage()}")


_COLLECT = _Collect()


def _describe(caught: warnings.WarningMessage) -> str:
    # A UserWarning is a message to the user as it stands; other kinds say what they are.
    if caught.category is UserWarning:
        return str(caught.message)
    return f"{caught.category.__name__}: {caught.message}"


@contextlib.contextmanager
def captured_warnings() -> Iterator[list[str]]:
    """Collect the warnings raised, and the library warnings logged, while the block runs.

    Yields the list the messages are appended to (each once, in order).
    Nothing is printed for them: the caller reports them. Captures nest.

    Examples
    --------
    >>> import numpy as np
    >>> with captured_warnings() as caught:
    ...     _ = np.log(np.zeros(1))
    >>> caught
    ['RuntimeWarning: divide by zero encountered in log']
    """
    messages: list[str] = []
    if not _COLLECT.targets:
        for name in LIBRARY_LOGGERS:
            library = logging.getLogger(name)
            library.addHandler(_COLLECT)
            _COLLECT.propagate[name], library.propagate = library.propagate, False
    _COLLECT.targets.append(messages)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield messages
            finally:
                messages.extend(_describe(w) for w in caught if not issubclass(w.category, _FOR_DEVELOPERS))
                messages[:] = list(dict.fromkeys(messages))
    finally:
        _COLLECT.targets.pop()
        if not _COLLECT.targets:
            for name in LIBRARY_LOGGERS:
                library = logging.getLogger(name)
                library.removeHandler(_COLLECT)
                library.propagate = _COLLECT.propagate.pop(name, True)
