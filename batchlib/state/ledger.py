"""The ledger: one record per (job, file), kept in the ``batchlib/`` folder.

On disk the ledger is three files:

``ledger.snapshot``
    The compacted index: fingerprints, container key stamps, job layouts, and
    what jobs read of their inputs' headers (for checks across the plate).
``ledger.records``
    The compacted full records, read only when a record is needed.
    Both are pickles of builtin types only (dicts, tuples, strings, numbers),
    written atomically (temporary sibling, then rename) and loaded with an
    unpickler that refuses every class, so a crafted file cannot run code.
``ledger.journal``
    An append-only log of changes since the snapshot, one JSON object per
    line, each written with a single ``write`` call. A process killed at any
    instant leaves at worst a torn last line, which loading drops.

Besides the full records, the ledger keeps for every successful record a
*fingerprint*: one string joining the parameter hash, the version and the
stamps of its inputs and outputs. A no-op rerun compares one string per file
and never unpickles the full records (they are loaded on first use only).

Committing a record appends one line: O(1) per file, however large the plate.
:meth:`Ledger.compact` folds the journal into a new snapshot (at the end of a
run); a crash between writing the snapshot and emptying the journal is
harmless because replaying a journal over a snapshot that already contains it
gives the same state. Only one process (the workflow driver, which holds the
folder lock) writes the ledger, which is what makes this safe on a network
file system.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import pickle
import time
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import LedgerError
from .atomic import atomic_write
from .journal import Journal
from .stamps import fingerprint

logger = logging.getLogger("Workflow.ledger")

SNAPSHOT_NAME = "ledger.snapshot"
RECORDS_NAME = "ledger.records"
JOURNAL_NAME = "ledger.journal"
FORMAT = "batchlib-ledger"
FORMAT_VERSION = 1

#: States of a record.
DONE, FAILED, INVALID = "done", "failed", "invalid"


class Record(NamedTuple):
    """What the ledger knows about one (job, file).

    Attributes
    ----------
    state : str
        ``"done"``, ``"failed"`` or ``"invalid"``.
    params : str
        Hash of the job parameters that affect the output.
    version : str
        The job's declared version.
    inputs : dict
        Stamp of every input the job read, by reference (``"name"`` for a
        file, ``"name::key"`` for a key in a container).
    outputs : dict
        Stamp of every output written, by reference.
    error : str or None
        Why the file failed or was invalid.
    duration : float
        Seconds the job spent on the file.
    host : str
        Host that processed the file.
    time : float
        When the record was committed (seconds since the epoch).
    recheck : bool
        An invalid verdict whose reason lies outside the file's content (a
        permission, the rest of the plate): checked again on every run.
    """

    state: str
    params: str
    version: str
    inputs: dict
    outputs: dict
    error: str | None
    duration: float
    host: str
    time: float
    recheck: bool = False


def _make_record(fields) -> Record:
    # Records written before a field was added are shorter: the new fields take their defaults.
    return Record(*fields)


class FileState(NamedTuple):
    """The last state of a file the ledger saw: its stat stamp and key stamps."""

    stamp: str
    keys: dict


@contextlib.contextmanager
def gc_paused():
    # Building hundreds of thousands of small objects triggers the cyclic
    # garbage collector again and again; none of them form cycles.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _BuiltinsOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"ledger snapshot refers to {module}.{name}; only builtin types are allowed")


def record_fingerprint(record: Record) -> str | None:
    """The fingerprint of a successful record; None for failed or invalid ones."""
    if record.state != DONE:
        return None
    return fingerprint(record.params, record.version, record.inputs.values(), record.outputs.values())


class Ledger:
    """Records of every (job, file) of one plate folder.

    Parameters
    ----------
    folder : path-like
        The bookkeeping folder (``<plate>/batchlib``).
    writable : bool
        Open for writing (the driver, holding the folder lock). A read-only
        ledger (``batchlib status``) never changes the files.
    """

    def __init__(self, folder: str | os.PathLike, writable: bool = True):
        self.folder = Path(folder)
        self.writable = writable
        self.snapshot_path = self.folder / SNAPSHOT_NAME
        self.records_path = self.folder / RECORDS_NAME
        self.journal_path = self.folder / JOURNAL_NAME
        # Full records are unpickled on first use; until then commits and
        # replayed journal entries wait in _pending.
        self._records: dict[str, dict[str, Record]] | None = None
        self._pending: list[tuple[str, str, Record]] = []
        self._fingerprints: dict[str, dict[str, str]] = {}
        self._files: dict[str, FileState] = {}
        self._jobs: dict[str, dict] = {}
        self._facts: dict[str, dict[str, tuple[str, dict]]] = {}
        self._journal = Journal(self.journal_path, "ledger journal", writable)
        if writable:
            self.folder.mkdir(parents=True, exist_ok=True)
        self._load()

    # ----------------------------------------------------------------- reading
    def _all_records(self) -> dict[str, dict[str, Record]]:
        if self._records is None:
            make_record = _make_record
            stored = self._read_pickle(self.records_path)["records"] if self.records_path.exists() else {}
            with gc_paused():
                self._records = {
                    job: {name: make_record(rec) for name, rec in recs.items()} for job, recs in stored.items()
                }
            for job, name, record in self._pending:
                self._records.setdefault(job, {})[name] = record
            self._pending.clear()
        return self._records

    def records(self, job: str) -> dict[str, Record]:
        """All records of ``job``, by file name (do not modify)."""
        return self._all_records().get(job, {})

    def get(self, job: str, name: str) -> Record | None:
        """The record of ``(job, name)``, or None."""
        return self._all_records().get(job, {}).get(name)

    def fingerprints(self, job: str) -> dict[str, str]:
        """Fingerprints of the successful records of ``job``, by file name."""
        return self._fingerprints.get(job, {})

    def file_state(self, name: str) -> FileState | None:
        """What the ledger last saw of file ``name``, or None."""
        return self._files.get(name)

    def input_facts(self, job: str) -> dict[str, tuple[str, dict]]:
        """What ``job`` read of its inputs' headers: ``name -> (file stamp, facts)`` (do not modify)."""
        return self._facts.get(job, {})

    def job_spec(self, job: str) -> dict | None:
        """The description of ``job`` saved by its last run, or None."""
        return self._jobs.get(job)

    def jobs(self) -> list[str]:
        """Names of all jobs that have a spec or records, in first-seen order."""
        return list(dict.fromkeys([*self._jobs, *self._fingerprints, *self._all_records()]))

    # ----------------------------------------------------------------- writing
    def commit(self, job: str, name: str, record: Record) -> None:
        """Store the record of ``(job, name)``: one journal line."""
        self._append({"op": "record", "job": job, "name": name, "rec": list(record)})
        self._store_record(job, name, record)

    def _store_record(self, job: str, name: str, record: Record) -> None:
        if self._records is None:
            self._pending.append((job, name, record))
        else:
            self._records.setdefault(job, {})[name] = record
        fingerprints = self._fingerprints.setdefault(job, {})
        fp = record_fingerprint(record)
        if fp is None:
            fingerprints.pop(name, None)
        else:
            fingerprints[name] = fp

    def observe_file(self, name: str, stamp: str, keys: dict | None = None, merge: bool = True) -> None:
        """Store the stat stamp of file ``name`` and the stamps of its keys.

        With ``merge`` the keys are added to those already known (a job wrote
        some keys of a container the ledger has followed); without, they
        replace them (the container changed behind the ledger's back and was
        read afresh).
        """
        keys = dict(keys or {})
        self._append({"op": "file", "name": name, "stamp": stamp, "keys": keys, "merge": merge})
        self._apply_file(name, stamp, keys, merge)

    def observe_facts(self, job: str, name: str, stamp: str | None, facts: dict) -> None:
        """Store what ``job`` read of input ``name`` (its header) while the file had ``stamp``."""
        self._append({"op": "facts", "job": job, "name": name, "stamp": stamp, "facts": facts})
        self._facts.setdefault(job, {})[name] = (stamp, facts)

    def set_job_spec(self, job: str, spec: dict) -> None:
        """Store how ``job`` matches its inputs (used by ``status``/``explain``)."""
        if self._jobs.get(job) != spec:
            self._append({"op": "job", "job": job, "spec": spec})
            self._jobs[job] = spec

    def _apply_file(self, name: str, stamp: str, keys: dict, merge: bool) -> None:
        old = self._files.get(name)
        if merge and old is not None:
            keys = {**old.keys, **keys}
        self._files[name] = FileState(stamp, keys)

    def _append(self, entry: dict) -> None:
        if not self.writable:
            raise LedgerError(f"ledger {self.folder} was opened read-only; only the workflow driver writes it")
        self._journal.append(entry)

    def flush(self) -> None:
        """Make the journal durable (fsync); call at the end of a job."""
        self._journal.flush()

    def compact(self) -> None:
        """Fold the journal into a new snapshot and empty the journal.

        Nothing is written when the journal is empty (a no-op rerun).
        """
        if not self.writable:
            raise LedgerError(f"ledger {self.folder} was opened read-only")
        if self._journal.lines == 0:
            return
        records = {job: {name: tuple(rec) for name, rec in recs.items()} for job, recs in self._all_records().items()}
        # Records first, then the index: a crash between them leaves the
        # journal in place, and replaying it over either gives the same state.
        atomic_write(self.records_path, pickle.dumps({"format": FORMAT, "records": records}, protocol=5))
        state = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "written": time.time(),
            "fingerprints": self._fingerprints,
            "files": {name: tuple(fs) for name, fs in self._files.items()},
            "jobs": self._jobs,
            "facts": self._facts,
        }
        atomic_write(self.snapshot_path, pickle.dumps(state, protocol=5))
        # Emptying after the snapshot is safe: replaying this journal over the
        # new snapshot would give the same state.
        self._journal.clear()

    def close(self) -> None:
        """Flush and close the journal."""
        self._journal.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- loading
    def _load(self) -> None:
        if self.snapshot_path.exists():
            self._load_snapshot()
        if self.journal_path.exists():
            self._replay_journal()

    def _read_pickle(self, path: Path) -> dict:
        try:
            with open(path, "rb", buffering=1 << 20) as f, gc_paused():
                state = _BuiltinsOnly(f).load()
        except Exception as err:
            raise LedgerError(
                f"cannot read the ledger file {path}: {err}. Move {self.folder} away to rebuild the bookkeeping "
                "(every file is then checked and rerun as needed)."
            ) from err
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise LedgerError(f"{path} is not a batchlib ledger file")
        return state

    def _load_snapshot(self) -> None:
        state = self._read_pickle(self.snapshot_path)
        if state.get("version", 0) > FORMAT_VERSION:
            raise LedgerError(
                f"{self.snapshot_path} has ledger format {state['version']}, this batchlib reads up to "
                f"{FORMAT_VERSION}; update batchlib"
            )
        self._fingerprints = state["fingerprints"]
        self._files = {name: FileState(*fs) for name, fs in state["files"].items()}
        self._jobs = dict(state["jobs"])
        self._facts = {job: {n: tuple(v) for n, v in facts.items()} for job, facts in state.get("facts", {}).items()}

    def _replay_journal(self) -> None:
        with gc_paused():  # many small objects, no cycles
            for entry in self._journal.read():
                try:
                    self._apply(entry)
                except (KeyError, TypeError, ValueError) as err:
                    logger.warning("ledger journal %s: skipping a damaged line (%s)", self.journal_path, err)

    def _apply(self, entry: dict) -> None:
        op = entry["op"]
        if op == "record":
            self._store_record(entry["job"], entry["name"], _make_record(entry["rec"]))
        elif op == "file":
            self._apply_file(entry["name"], entry["stamp"], entry["keys"], entry["merge"])
        elif op == "job":
            self._jobs[entry["job"]] = entry["spec"]
        elif op == "facts":
            self._facts.setdefault(entry["job"], {})[entry["name"]] = (entry["stamp"], entry["facts"])
        else:
            raise KeyError(f"unknown ledger operation {op!r}")
