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


class _Collect(logging.Handler):
    def __init__(self, messages: list[str]):
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


def _describe(caught: warnings.WarningMessage) -> str:
    # A UserWarning is a message to the user as it stands; other kinds say what they are.
    if caught.category is UserWarning:
        return str(caught.message)
    return f"{caught.category.__name__}: {caught.message}"


@contextlib.contextmanager
def captured_warnings() -> Iterator[list[str]]:
    """Collect the warnings raised, and the library warnings logged, while the block runs.

    Yields the list the messages are appended to (each once, in order).
    Nothing is printed for them: the caller reports them.

    Examples
    --------
    >>> import numpy as np
    >>> with captured_warnings() as caught:
    ...     _ = np.log(np.zeros(1))
    >>> caught
    ['RuntimeWarning: divide by zero encountered in log']
    """
    messages: list[str] = []
    handler = _Collect(messages)
    loggers = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    propagate = [lg.propagate for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # Messages for developers of the libraries we call, not about the files.
            for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
                warnings.filterwarnings("ignore", category=category)
            try:
                yield messages
            finally:
                messages.extend(_describe(w) for w in caught)
                messages[:] = list(dict.fromkeys(messages))
    finally:
        for lg, before in zip(loggers, propagate):
            lg.removeHandler(handler)
            lg.propagate = before
