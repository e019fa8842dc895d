"""The ledger survives torn writes and refuses foreign content."""

import os
import pickle

import pytest

from batchlib.errors import LedgerError
from batchlib.state.ledger import Ledger, Record


def record(state="done", stamp="1:1"):
    return Record(state, "p", "1", {"a.tif": stamp}, {"a.out": "2:2"}, None, 0.5, "host", 1.0)


def test_commit_reload_and_compact(tmp_path):
    with Ledger(tmp_path) as ledger:
        ledger.commit("Job", "a.tif", record())
        ledger.commit("Job", "a.tif", record(stamp="9:9"))  # last one wins
        ledger.observe_file("a.h5", "3:3", {"raw": "s1"})
        ledger.observe_file("a.h5", "4:4", {"seg": "s2"}, merge=True)
    reloaded = Ledger(tmp_path, writable=False)
    assert reloaded.get("Job", "a.tif").inputs == {"a.tif": "9:9"}
    assert reloaded.file_state("a.h5") == ("4:4", {"raw": "s1", "seg": "s2"})
    reloaded = Ledger(tmp_path)
    reloaded.compact()
    assert os.path.getsize(tmp_path / "ledger.journal") == 0
    again = Ledger(tmp_path, writable=False)
    assert again.get("Job", "a.tif") == reloaded.get("Job", "a.tif")
    assert again.file_state("a.h5") == reloaded.file_state("a.h5")


def test_torn_last_line_is_dropped_and_truncated(tmp_path):
    with Ledger(tmp_path) as ledger:
        ledger.commit("Job", "a.tif", record())
        ledger.commit("Job", "b.tif", record())
    journal = tmp_path / "ledger.journal"
    data = journal.read_bytes()
    journal.write_bytes(data[:-7])  # a kill in the middle of the second line
    ledger = Ledger(tmp_path)
    assert list(ledger.records("Job")) == ["a.tif"]
    assert journal.read_bytes().endswith(b"\n")
    ledger.commit("Job", "c.tif", record())
    ledger.close()
    assert sorted(Ledger(tmp_path, writable=False).records("Job")) == ["a.tif", "c.tif"]


def test_replay_over_newer_snapshot_is_idempotent(tmp_path):
    # A crash between writing the snapshot and emptying the journal.
    with Ledger(tmp_path) as ledger:
        ledger.commit("Job", "a.tif", record(stamp="1:1"))
        ledger.commit("Job", "a.tif", record(stamp="2:2"))
    journal = (tmp_path / "ledger.journal").read_bytes()
    ledger = Ledger(tmp_path)
    ledger.compact()
    (tmp_path / "ledger.journal").write_bytes(journal)
    assert Ledger(tmp_path, writable=False).get("Job", "a.tif").inputs == {"a.tif": "2:2"}


def test_snapshot_with_code_is_refused(tmp_path):
    (tmp_path / "ledger.snapshot").write_bytes(pickle.dumps({"format": "batchlib-ledger", "x": os.getcwd}))
    with pytest.raises(LedgerError, match="only builtin types"):
        Ledger(tmp_path)


def test_read_only_ledger_does_not_write(tmp_path):
    ledger = Ledger(tmp_path / "missing", writable=False)
    with pytest.raises(LedgerError, match="read-only"):
        ledger.commit("Job", "a", record())
    assert not (tmp_path / "missing").exists()
