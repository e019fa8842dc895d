"""Human-readable status files: ``batchlib/<Job>.status`` and ``<Workflow>.status``.

Both are JSON, rewritten whole and atomically (never appended), so a reader
always sees a complete file. They are summaries derived from the ledger: a
file that failed and later succeeded disappears from the failed list.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from .atomic import atomic_write

#: Job states (docs/architecture.md, "State vocabulary").
PROCESSED, FAILED_OUTPUTS, INVALID_INPUTS, NOT_RUN = "processed", "failed_outputs", "invalid_inputs", "not_run"


def job_state(done: int, failed: int, invalid: int) -> str:
    """The state of a job from its counts.

    Examples
    --------
    >>> job_state(3, 0, 0), job_state(3, 1, 0), job_state(3, 0, 2), job_state(0, 0, 0)
    ('processed', 'failed_outputs', 'invalid_inputs', 'not_run')
    """
    if failed:
        return FAILED_OUTPUTS
    if invalid:
        return INVALID_INPUTS
    if done:
        return PROCESSED
    return NOT_RUN


def now_iso() -> str:
    """The current local time, ISO 8601 with offset."""
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def status_path(bookkeeping: str | os.PathLike, name: str) -> Path:
    """Path of the status file of a job or workflow called ``name``."""
    return Path(bookkeeping) / f"{name}.status"


def write_status(bookkeeping: str | os.PathLike, name: str, content: dict) -> None:
    """Write a status file atomically."""
    atomic_write(status_path(bookkeeping, name), json.dumps(content, indent=2, sort_keys=False) + "\n", fsync=False)


def read_status(bookkeeping: str | os.PathLike, name: str) -> dict | None:
    """Read a status file, or None if missing or unreadable."""
    try:
        return json.loads(status_path(bookkeeping, name).read_text())
    except (OSError, ValueError):
        return None
