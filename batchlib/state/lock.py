"""The folder lock ``batchlib/.lock``: one workflow per plate folder.

The lock file holds JSON: who holds it (pid, host, the process start time),
since when, and a heartbeat the holder refreshes every few seconds. It is
created with :func:`os.link` from a fully written temporary file, which is
atomic even on NFS, so the lock never exists half-written.

Deciding whether a lock is stale is a pure function, :func:`lock_is_stale`:
a lock of this host whose process is gone (or whose pid now belongs to a
younger process) is stale at once; a lock of another host is stale when its
heartbeat is older than its TTL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

from ..errors import FolderLockedError
from .atomic import atomic_write, temporary_sibling

logger = logging.getLogger("Workflow.lock")

LOCK_NAME = ".lock"
#: Seconds without heartbeat after which another host's lock is stale.
DEFAULT_TTL = 120.0


def _now_iso() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def process_start_time(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux), or None.

    Together with the pid it identifies a process even after the pid is reused.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after ')' are fixed.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[19])


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_is_stale(holder: dict, host: str, now: float) -> tuple[bool, str]:
    """Decide whether a lock left by ``holder`` may be broken.

    Parameters
    ----------
    holder : dict
        The content of the lock file.
    host : str
        This host's name.
    now : float
        The current time (seconds since the epoch).

    Returns
    -------
    stale : bool
    reason : str
        Why, in words.
    """
    pid = int(holder.get("pid", -1))
    if holder.get("host") == host:
        if not pid_alive(pid):
            return True, f"process {pid} no longer runs on {host}"
        started = holder.get("pid_start")
        current = process_start_time(pid)
        if started is not None and current is not None and current != started:
            return True, f"pid {pid} now belongs to another process"
        return False, f"process {pid} still runs on {host}"
    age = now - float(holder.get("heartbeat", 0))
    ttl = float(holder.get("ttl", DEFAULT_TTL))
    if age > ttl:
        return True, f"no heartbeat from {holder.get('host')} for {age:.0f} s (TTL {ttl:.0f} s)"
    return False, f"heartbeat from {holder.get('host')} {age:.0f} s ago"


def read_lock(folder: str | os.PathLike) -> dict | None:
    """The holder of the lock in bookkeeping folder ``folder``, or None."""
    return read_lock_file(Path(folder) / LOCK_NAME)


def read_lock_file(path: Path) -> dict | None:
    """The content of a lock file, or None if there is none."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        # Unreadable content: report it as held by nobody we can name.
        return {"pid": -1, "host": "?", "since": "?", "heartbeat": 0, "ttl": 0, "unreadable": True}


def describe_holder(holder: dict) -> str:
    """One line naming a lock holder."""
    what = f" ({holder['workflow']})" if holder.get("workflow") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}{what}"


class FolderLock:
    """Exclusive lock on a plate folder's bookkeeping folder.

    Parameters
    ----------
    folder : path-like
        The bookkeeping folder (``<plate>/batchlib``).
    workflow : str
        Name of the workflow taking the lock (shown to others).
    ttl : float
        Seconds after which another host may consider the lock stale if the
        heartbeat stops.
    heartbeat : float
        Seconds between heartbeats; defaults to a third of ``ttl``.

    Examples
    --------
    >>> import tempfile
    >>> with FolderLock(tempfile.mkdtemp(), "demo"):
    ...     pass
    """

    def __init__(
        self, folder: str | os.PathLike, workflow: str = "", ttl: float = DEFAULT_TTL, heartbeat: float | None = None
    ):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.workflow = workflow
        self.ttl = ttl
        self.heartbeat_interval = heartbeat if heartbeat is not None else ttl / 3
        self.host = socket.gethostname()
        self._info: dict | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _content(self) -> dict:
        now = time.time()
        if self._info is None:
            self._info = {
                "pid": os.getpid(),
                "host": self.host,
                "since": _now_iso(),
                "pid_start": process_start_time(os.getpid()),
                "workflow": self.workflow,
                "ttl": self.ttl,
            }
        return {**self._info, "heartbeat": now}

    def _try_create(self) -> bool:
        tmp = temporary_sibling(self.path)
        tmp.write_text(json.dumps(self._content()))
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink()

    def _break_if_stale(self) -> bool:
        holder = read_lock(self.folder)
        if holder is None:
            return True  # vanished meanwhile: try again
        stale, reason = lock_is_stale(holder, self.host, time.time())
        if not stale:
            return False
        # Rename first, then check we moved the lock we judged: two processes
        # breaking the same stale lock must not remove a fresh one.
        aside = temporary_sibling(self.path)
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True
        moved = read_lock_file(aside)
        if moved != holder:
            with contextlib.suppress(OSError):
                os.link(aside, self.path)
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        logger.warning("broke a stale lock in %s held by %s: %s", self.folder, describe_holder(holder), reason)
        return True

    def acquire(self, wait: bool = False, timeout: float | None = None, poll: float = 2.0) -> None:
        """Take the lock, or raise :class:`FolderLockedError` (exit code 75).

        With ``wait`` the call polls until the lock is free (or ``timeout``
        seconds have passed).
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._try_create():
                self._start_heartbeat()
                return
            if self._break_if_stale():
                continue
            holder = read_lock(self.folder) or {}
            if not wait or (deadline is not None and time.monotonic() > deadline):
                raise FolderLockedError(
                    f"folder {self.folder.parent} is locked by {describe_holder(holder)}. "
                    f"Wait for it to finish, pass --wait, or, if that run is gone, "
                    f"run `batchlib unlock {self.folder.parent}`.",
                    holder,
                )
            time.sleep(poll)

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="batchlib-lock-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_interval):
            holder = read_lock(self.folder)
            if holder is None or holder.get("pid") != os.getpid() or holder.get("host") != self.host:
                logger.error("lost the lock on %s (now %s)", self.folder, holder and describe_holder(holder))
                return
            with contextlib.suppress(OSError):
                atomic_write(self.path, json.dumps(self._content()), fsync=False)

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        holder = read_lock(self.folder)
        if holder and holder.get("pid") == os.getpid() and holder.get("host") == self.host:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def unlock(folder: str | os.PathLike) -> dict | None:
    """Remove the lock of bookkeeping folder ``folder``; return who held it."""
    holder = read_lock(folder)
    (Path(folder) / LOCK_NAME).unlink(missing_ok=True)
    return holder
