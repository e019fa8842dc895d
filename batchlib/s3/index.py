"""What was transferred between a folder and one S3 location: a JSON-lines journal (:mod:`batchlib.state.journal`).

One index per (folder, endpoint, bucket, prefix, direction), in
``batchlib/transfers/``. A line is appended (one ``os.write``) only after an
object is complete, so a killed transfer leaves every finished file recorded
and nothing half-recorded; a torn last line is dropped on loading. Besides
finished files it records multipart uploads in flight, so a rerun resumes
them instead of starting over.

The index is a cache: if it is lost, a transfer compares checksums with the
bucket instead, and sends nothing that is already there.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from ..state.journal import Journal

logger = logging.getLogger("Workflow.s3")

TRANSFERS = "transfers"


def index_path(bookkeeping: str | os.PathLike, direction: str, endpoint_url: str | None, location: str) -> Path:
    """Path of the index of one ``direction`` ("upload" or "download") and location.

    Examples
    --------
    >>> path = index_path("/p/batchlib", "upload", None, "s3://b/r1")
    >>> path.parent.name, path.name.startswith("upload-"), path.suffix
    ('transfers', True, '.jsonl')
    """
    ident = hashlib.sha1(f"{endpoint_url or 'aws'}|{location}".encode()).hexdigest()[:16]
    return Path(bookkeeping) / TRANSFERS / f"{direction}-{ident}.jsonl"


class TransferIndex:
    """Finished transfers (``path -> entry``) and multipart uploads in flight.

    Parameters
    ----------
    path : path-like
        The journal file (created on first write).
    location : str
        The S3 location, written in the first line for people reading the file.
    """

    def __init__(self, path: str | os.PathLike, location: str = ""):
        self.path = Path(path)
        self.location = location
        self.done: dict[str, dict] = {}
        self.pending: dict[str, dict] = {}
        self.manifest: dict = {}
        self._journal = Journal(self.path, "transfer index", header={"op": "location", "location": location})
        for entry in self._journal.read():
            try:
                self._apply(entry)
            except (KeyError, TypeError, AttributeError) as err:
                logger.warning("transfer index %s: skipping a damaged line (%s)", self.path, err)

    def _apply(self, entry: dict) -> None:
        op, rel = entry["op"], entry.get("path")
        if op == "done":
            self.done[rel] = entry
            self.pending.pop(rel, None)
        elif op == "pending":
            self.pending[rel] = entry
        elif op == "manifest":
            self.manifest = entry
        elif op == "forget":
            self.done.pop(rel, None)
            self.pending.pop(rel, None)

    def _append(self, entry: dict) -> None:
        self._journal.append(entry)
        self._apply(entry)

    def record_done(self, rel: str, **fields: object) -> None:
        """Record that ``rel`` is complete at the other end (``stamp``, ``sha256``, ``size``, ``key``, ...)."""
        self._append({"op": "done", "path": rel, **fields})

    def record_pending(self, rel: str, **fields: object) -> None:
        """Record a multipart upload in flight for ``rel`` (``upload_id``, ``sha256``, ``part_size``, ``key``)."""
        self._append({"op": "pending", "path": rel, **fields})

    def record_manifest(self, **fields: object) -> None:
        """Record what the last manifest was made from (a fingerprint of the files)."""
        self._append({"op": "manifest", **fields})

    def forget(self, rel: str) -> None:
        """Drop what is known of ``rel``."""
        self._append({"op": "forget", "path": rel})

    def compact(self) -> None:
        """Rewrite the journal with one line per file (atomically), if it holds outdated lines."""
        entries = [*self.done.values(), *self.pending.values(), *([self.manifest] if self.manifest else [])]
        if self._journal.lines <= len(entries) + 1:  # + the location line
            self.close()
            return  # nothing to fold (a no-op rerun writes nothing)
        self._journal.rewrite(entries)

    def close(self) -> None:
        """Close the journal file."""
        self._journal.close()
