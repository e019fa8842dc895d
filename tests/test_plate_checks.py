"""plate_checks: which jobs check across the plate, and input facts read once per file version."""

import logging
import os

from batchlib import BatchJob
from batchlib.plate_checks import checks_across_plate, gather_facts
from batchlib.scan import FolderScan
from batchlib.state.ledger import Ledger

LOGGER = logging.getLogger("Workflow.test")


class Sizes(BatchJob):
    """Facts: each file's size; a file named broken* cannot be read."""

    def __init__(self):
        super().__init__(input_pattern="*.txt", output_ext=".out")
        self._reads: list[str] = []

    def input_facts(self, path):
        self._reads.append(os.path.basename(path))
        if os.path.basename(path).startswith("broken"):
            raise ValueError("unreadable header")
        return {"size": os.path.getsize(path)}

    def plate_problems(self, facts, kept):
        return {}


def facts_of(job, raw, plate, ledger):
    return gather_facts(job, job.layout(str(plate), str(raw)), FolderScan(), ledger, str(plate), LOGGER)


def test_only_jobs_that_override_plate_problems_check_across_the_plate():
    assert checks_across_plate(Sizes())
    assert not checks_across_plate(BatchJob(input_pattern="*.txt", output_ext=".out"))


def test_facts_are_read_once_per_file_version_and_kept_in_the_ledger(tmp_path):
    raw, plate = tmp_path / "raw", tmp_path / "P1"
    raw.mkdir()
    plate.mkdir()
    for name, text in (("a.txt", "1"), ("b.txt", "22"), ("broken.txt", "x")):
        (raw / name).write_text(text)
    job = Sizes()
    ledger = Ledger(plate / "batchlib")
    assert facts_of(job, raw, plate, ledger) == {"a.txt": {"size": 1}, "b.txt": {"size": 2}, "broken.txt": {}}
    assert sorted(job._reads) == ["a.txt", "b.txt", "broken.txt"]
    ledger.close()

    # A new run (a new ledger object on the same folder): unchanged files are not read again.
    job._reads.clear()
    (raw / "b.txt").write_text("4444")
    os.utime(raw / "b.txt", ns=(1, 1))  # a different stamp even within the clock's resolution
    (raw / "c.txt").write_text("333")
    ledger = Ledger(plate / "batchlib")
    facts = facts_of(job, raw, plate, ledger)
    assert facts["a.txt"] == {"size": 1} and facts["b.txt"] == {"size": 4} and facts["c.txt"] == {"size": 3}
    assert sorted(job._reads) == ["b.txt", "c.txt"]  # broken.txt's empty facts are kept too
    ledger.close()


def test_a_new_facts_version_reads_every_header_again(tmp_path):
    raw, plate = tmp_path / "raw", tmp_path / "P1"
    raw.mkdir()
    plate.mkdir()
    (raw / "a.txt").write_text("1")
    job = Sizes()
    with Ledger(plate / "batchlib") as ledger:
        facts_of(job, raw, plate, ledger)
    job._reads.clear()
    with Ledger(plate / "batchlib") as ledger:
        facts_of(job, raw, plate, ledger)
    assert job._reads == []  # kept
    object.__setattr__(job, "facts_version", "2")  # reads headers another way (a class attribute in real jobs)
    with Ledger(plate / "batchlib") as ledger:
        assert facts_of(job, raw, plate, ledger) == {"a.txt": {"size": 1}}
    assert job._reads == ["a.txt"]
