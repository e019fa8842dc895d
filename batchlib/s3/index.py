"""What was transferred between a folder and one S3 location: a JSON-lines journal.

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
import json
import logging
import os
from pathlib import Path

from ..state.atomic import atomic_write

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
        self._fd: int | None = None
        self._lines = 0  # lines in the journal file
        self._load()

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        good_end = data.rfind(b"\n") + 1  # after it: a torn last line of a killed run
        lines = data[:good_end].splitlines()
        try:
            entries = json.loads(b"[" + b",".join(lines) + b"]")  # one parse for the whole file
        except ValueError:
            entries = [entry for entry in map(self._parse, lines) if entry is not None]
        for entry in entries:
            try:
                self._apply(entry)
            except (KeyError, TypeError, AttributeError) as err:
                logger.warning("transfer index %s: skipping a damaged line (%s)", self.path, err)
        self._lines = len(lines)
        if good_end < len(data):
            logger.warning("transfer index %s ends in a torn line (a run was killed); dropping it", self.path)
            os.truncate(self.path, good_end)

    def _parse(self, line: bytes) -> dict | None:
        try:
            return json.loads(line)
        except ValueError as err:
            logger.warning("transfer index %s: skipping a damaged line (%s)", self.path, err)
            return None

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
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if new:
                os.write(self._fd, _line({"op": "location", "location": self.location}))
        os.write(self._fd, _line(entry))  # one write per line: whole or torn at the end
        self._lines += 1
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
        if self._lines <= len(entries) + 1:
            self.close()
            return  # nothing to fold (a no-op rerun writes nothing)
        lines = [_line({"op": "location", "location": self.location})] + [_line(e) for e in entries]
        self.close()
        atomic_write(self.path, b"".join(lines))
        self._lines = len(lines)

    def close(self) -> None:
        """Close the journal file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _line(entry: dict) -> bytes:
    return (json.dumps(entry, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")
