"""The append-only journal behind the ledger and the S3 transfer index."""

import logging

from batchlib.state.journal import Journal, encode


def test_entries_come_back_in_order_with_the_header_first(tmp_path):
    path = tmp_path / "sub" / "j.jsonl"
    journal = Journal(path, "test journal", header={"op": "hello"})
    assert journal.read() == []  # no file yet
    for i in range(3):
        journal.append({"op": "x", "i": i, "name": "é"})
    journal.close()
    entries = [{"op": "x", "i": i, "name": "é"} for i in range(3)]
    assert Journal(path, "test journal").read() == [{"op": "hello"}, *entries]
    assert path.read_bytes().count(b"\n") == 4


def test_a_torn_end_is_dropped_and_cut_away_only_when_writable(tmp_path, caplog):
    path = tmp_path / "j.jsonl"
    whole = encode({"a": 1}) + encode({"a": 2})
    path.write_bytes(whole + b'{"a": 3')  # killed in the middle of a write
    assert Journal(path, "test journal", writable=False).read() == [{"a": 1}, {"a": 2}]
    assert path.read_bytes().endswith(b'{"a": 3')  # a reader never changes the file
    with caplog.at_level(logging.WARNING, logger="Workflow"):
        journal = Journal(path, "test journal")
        assert journal.read() == [{"a": 1}, {"a": 2}] and journal.lines == 2
    assert path.read_bytes() == whole  # the next line starts clean
    assert "test journal" in caplog.text and "torn line" in caplog.text and str(path) in caplog.text
    journal.append({"a": 4})
    journal.close()
    assert Journal(path, "test journal").read() == [{"a": 1}, {"a": 2}, {"a": 4}]


def test_a_damaged_line_in_the_middle_is_skipped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "j.jsonl"
    path.write_bytes(encode({"a": 1}) + b"garbage\n" + encode({"a": 2}))
    with caplog.at_level(logging.WARNING, logger="Workflow"):
        assert Journal(path, "test journal").read() == [{"a": 1}, {"a": 2}]
    assert "damaged line" in caplog.text


def test_rewrite_and_clear(tmp_path):
    path = tmp_path / "j.jsonl"
    journal = Journal(path, "test journal", header={"op": "loc"})
    for i in range(5):
        journal.append({"i": i})
    assert journal.lines == 6
    journal.rewrite([{"i": 4}])
    assert Journal(path, "test journal").read() == [{"op": "loc"}, {"i": 4}] and journal.lines == 2
    journal.clear()
    assert path.read_bytes() == b"" and journal.lines == 0


def test_a_read_only_journal_refuses_to_append(tmp_path):
    journal = Journal(tmp_path / "j.jsonl", "test journal", writable=False)
    try:
        journal.append({"a": 1})
    except PermissionError as err:
        assert "read-only" in str(err) and "j.jsonl" in str(err)
    else:
        raise AssertionError("appended to a read-only journal")
    assert not (tmp_path / "j.jsonl").exists()
