"""An append-only JSON-lines journal: the one primitive behind the ledger and the S3 transfer index.

Each entry is one JSON object on one line, appended with a single
``os.write``, so a run killed at any instant leaves every line whole except,
at worst, a torn last one. Reading drops what follows the last readable line
(and, when writable, truncates it away: appending after a torn line would
glue two entries together) and skips damaged lines in the middle, with a
warning naming the file. The owner gives entries their meaning, and folds
the journal into something smaller when it likes (:meth:`Journal.rewrite`,
:meth:`Journal.clear`).
"""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from .atomic import atomic_write

logger = logging.getLogger("Workflow.journal")


def encode(entry: dict) -> bytes:
    """One journal line: compact JSON, UTF-8, newline-terminated.

    Examples
    --------
    >>> encode({"op": "done", "path": "a.h5"})
    b'{"op":"done","path":"a.h5"}\\n'
    """
    return (json.dumps(entry, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")


class Journal:
    """The journal file at ``path``.

    Parameters
    ----------
    path : path-like
        The file; created (with its folder) on the first append.
    what : str
        What it is, for messages ("ledger journal", "transfer index").
    writable : bool
        Whether this process may append to it and repair a torn end.
    header : dict, optional
        Entry written first when the file is created (e.g. what it belongs to).
    """

    def __init__(self, path: str | os.PathLike, what: str, writable: bool = True, header: dict | None = None):
        self.path = Path(path)
        self.what = what
        self.writable = writable
        self.header = header
        #: Whole lines in the file (read or appended), for deciding when to fold it.
        self.lines = 0
        self._fd: int | None = None

    def read(self) -> list[dict]:
        """The entries, in order; a torn end dropped (and, when writable, truncated), damaged lines skipped."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        good_end = data.rfind(b"\n") + 1  # after it: a torn last line of a killed run
        lines = data[:good_end].splitlines()
        try:
            entries = json.loads(b"[" + b",".join(lines) + b"]")  # one parse for the whole file
        except ValueError:
            entries = []
            for line in lines:
                try:
                    entries.append(json.loads(line))
                except ValueError as err:
                    logger.warning("%s %s: skipping a damaged line (%s)", self.what, self.path, err)
        self.lines = len(entries)
        # Read-only, a partial last line may be one a live run is writing: drop it quietly.
        if good_end < len(data) and self.writable:
            logger.warning(
                "%s %s ends in a torn line (a run was killed); dropping %d bytes",
                self.what,
                self.path,
                len(data) - good_end,
            )
            os.truncate(self.path, good_end)
        return entries

    def append(self, entry: dict) -> None:
        """Add ``entry`` as one line, with one ``os.write``.

        Raises
        ------
        OSError
            Naming the file; on a full disk the partial line is taken back
            first, so that the next append starts on a clean line.
        """
        if not self.writable:
            raise PermissionError(errno.EACCES, f"{self.what} was opened read-only", str(self.path))
        if self._fd is None:
            self._open()
        line = encode(entry)
        try:
            written = os.write(self._fd, line)
        except OSError as err:
            raise OSError(err.errno, err.strerror, str(self.path)) from err
        if written < len(line):  # a full disk: take the torn line back
            os.ftruncate(self._fd, os.lseek(self._fd, 0, os.SEEK_END) - written)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        self.lines += 1

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if new and self.header is not None:
            os.write(self._fd, encode(self.header))
            self.lines += 1

    def flush(self) -> None:
        """Make what was appended durable (fsync)."""
        if self._fd is not None:
            os.fsync(self._fd)

    def rewrite(self, entries: Iterable[dict]) -> None:
        """Replace the whole journal by ``entries`` (the header first, if any), atomically."""
        self.close()
        lines = ([encode(self.header)] if self.header is not None else []) + [encode(e) for e in entries]
        atomic_write(self.path, b"".join(lines))
        self.lines = len(lines)

    def clear(self) -> None:
        """Empty the journal (its entries are kept elsewhere now)."""
        self.close()
        with open(self.path, "wb"):
            pass
        self.lines = 0

    def close(self) -> None:
        """Flush and close the file."""
        if self._fd is not None:
            self.flush()
            os.close(self._fd)
            self._fd = None
