"""The incremental rules (README "When a file is processed again"), one by one."""

import os
import time

from sample_jobs import CopyText, CopyTextV2, ImportText, Scale, SumPlate, read_text, write_inputs

from batchlib import run_workflow
from batchlib.io import open_file
from batchlib.state.ledger import Ledger


def run(folder, raw, jobs, **kwargs):
    return run_workflow("wf", folder, jobs, input_folder=raw, progress=False, **kwargs)


def mtimes(folder, ext=".out"):
    return {n: os.stat(os.path.join(folder, n)).st_mtime_ns for n in sorted(os.listdir(folder)) if n.endswith(ext)}


def test_first_run_processes_everything(plate):
    folder, raw = plate
    write_inputs(raw, 3)
    result = run(folder, raw, [CopyText(suffix="!")])["CopyText"]
    assert (result.processed, result.skipped, result.state) == (3, 0, "processed")
    assert read_text(os.path.join(folder, "f001.out")) == "1!"


def test_new_files_only(plate):
    folder, raw = plate
    write_inputs(raw, 3)
    run(folder, raw, [CopyText()])
    before = mtimes(folder)
    write_inputs(raw, 2, start=3)
    result = run(folder, raw, [CopyText()])["CopyText"]
    assert (result.processed, result.skipped) == (2, 3)
    after = mtimes(folder)
    assert {n: after[n] for n in before} == before  # old outputs untouched
    assert sorted(after) == [f"f{i:03d}.out" for i in range(5)]


def test_changed_raw_input_is_reprocessed(plate):
    folder, raw = plate
    paths = write_inputs(raw, 3)
    run(folder, raw, [CopyText()])
    time.sleep(0.01)
    with open(paths[1], "w") as f:
        f.write("changed")
    result = run(folder, raw, [CopyText()])["CopyText"]
    assert (result.processed, result.skipped) == (1, 2)
    assert read_text(os.path.join(folder, "f001.out")) == "changed"


def test_same_size_new_mtime_is_a_change(plate):
    folder, raw = plate
    paths = write_inputs(raw, 2)
    run(folder, raw, [CopyText()])
    st = os.stat(paths[0])
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert run(folder, raw, [CopyText()])["CopyText"].processed == 1


def test_parameter_change_reprocesses_all(plate):
    folder, raw = plate
    write_inputs(raw, 3)
    run(folder, raw, [CopyText(suffix="a")])
    assert run(folder, raw, [CopyText(suffix="a")])["CopyText"].processed == 0
    assert run(folder, raw, [CopyText(suffix="b")])["CopyText"].processed == 3
    assert read_text(os.path.join(folder, "f000.out")) == "0b"
    # A parameter that does not affect the output (not in parameters()) reruns nothing.
    assert run(folder, raw, [CopyText(suffix="b", delay=0.001)])["CopyText"].processed == 0


def test_run_kwargs_count_as_parameters(plate):
    folder, raw = plate
    write_inputs(raw, 2)
    run(folder, raw, [(CopyText(), {"extra": "x"})])
    assert run(folder, raw, [(CopyText(), {"extra": "x"})])["CopyText"].processed == 0
    assert run(folder, raw, [(CopyText(), {"extra": "y"})])["CopyText"].processed == 2
    assert read_text(os.path.join(folder, "f000.out")) == "0y"


def test_version_bump_reprocesses_all(plate):
    folder, raw = plate
    write_inputs(raw, 3)

    class Job(CopyText):
        pass

    class JobV2(CopyTextV2):
        pass

    # Same job name, new version.
    JobV2.__name__ = Job.__name__ = "Copy"
    run(folder, raw, [Job()])
    result = run(folder, raw, [JobV2()])["Copy"]
    assert result.processed == 3


def test_force_recompute(plate):
    folder, raw = plate
    write_inputs(raw, 3)
    run(folder, raw, [CopyText()])
    assert run(folder, raw, [CopyText()], force_recompute=True)["CopyText"].processed == 3


def test_missing_output_is_recomputed(plate):
    folder, raw = plate
    write_inputs(raw, 3)
    run(folder, raw, [CopyText()])
    os.remove(os.path.join(folder, "f002.out"))
    assert run(folder, raw, [CopyText()])["CopyText"].processed == 1
    assert os.path.exists(os.path.join(folder, "f002.out"))


def test_invalid_output_is_recomputed(plate):
    folder, raw = plate
    write_inputs(raw, 2)

    class CheckedCopy(CopyText):
        def validate_output(self, path):
            return None if read_text(path) else "empty output"

    run(folder, raw, [CheckedCopy()])
    # An edited but still valid output is kept; an emptied one is rebuilt.
    with open(os.path.join(folder, "f000.out"), "w") as f:
        f.write("edited")
    open(os.path.join(folder, "f001.out"), "w").close()
    result = run(folder, raw, [CheckedCopy()])["CheckedCopy"]
    assert result.processed == 1
    assert read_text(os.path.join(folder, "f001.out")) == "1"
    assert read_text(os.path.join(folder, "f000.out")) == "edited"


def test_raw_inputs_are_never_modified(plate):
    folder, raw = plate
    paths = write_inputs(raw, 3)
    before = {p: (os.stat(p).st_mtime_ns, read_text(p)) for p in paths}
    run(folder, raw, [CopyText(), ImportText(), Scale()])
    run(folder, raw, [CopyText(), ImportText(), Scale()], force_recompute=True)
    assert {p: (os.stat(p).st_mtime_ns, read_text(p)) for p in paths} == before


# ------------------------------------------------------------------ containers
def container_chain():
    return [ImportText(), Scale(factor=2.0), SumPlate()]


def test_container_keys_and_stamps(plate):
    folder, raw = plate
    write_inputs(raw, 3)
    results = run(folder, raw, container_chain())
    assert [r.processed for r in results.values()] == [3, 3, 1]
    with open_file(os.path.join(folder, "f002.h5"), "r") as f:
        assert f["scaled"][0, 0] == 4.0
        assert f["scaled"].attrs["batchlib_stamp"].startswith("Scale:")
    assert read_text(os.path.join(folder, "plate_sum.txt")) == f"3 {2 * 16 * (0 + 1 + 2):.1f}\n"
    results = run(folder, raw, container_chain())
    assert [r.processed for r in results.values()] == [0, 0, 0]


def test_rewritten_upstream_key_reruns_downstream_only_for_that_file(plate):
    folder, raw = plate
    paths = write_inputs(raw, 3)
    run(folder, raw, container_chain())
    time.sleep(0.01)
    with open(paths[0], "w") as f:
        f.write("10")
    results = run(folder, raw, container_chain())
    assert [r.processed for r in results.values()] == [1, 1, 1]
    assert read_text(os.path.join(folder, "plate_sum.txt")) == f"3 {2 * 16 * (10 + 1 + 2):.1f}\n"


def test_key_changed_behind_the_ledger_reruns_its_job(plate):
    folder, raw = plate
    write_inputs(raw, 2)
    run(folder, raw, container_chain())
    with open_file(os.path.join(folder, "f001.h5"), "a") as f:
        del f["scaled"]
    results = run(folder, raw, container_chain())
    assert [r.processed for r in results.values()] == [0, 1, 1]


def test_plate_job_reruns_when_input_set_changes(plate):
    folder, raw = plate
    write_inputs(raw, 2)
    run(folder, raw, container_chain())
    write_inputs(raw, 1, start=2)
    results = run(folder, raw, container_chain())
    assert [r.processed for r in results.values()] == [1, 1, 1]
    os.remove(os.path.join(folder, "f000.h5"))
    os.remove(os.path.join(raw, "f000.txt"))
    results = run(folder, raw, container_chain())
    assert results["SumPlate"].processed == 1
    assert read_text(os.path.join(folder, "plate_sum.txt")).startswith("2 ")


def test_noop_rerun_opens_no_container(plate, monkeypatch):
    folder, raw = plate
    write_inputs(raw, 4)
    run(folder, raw, container_chain())
    import batchlib.scan

    opened = []
    original = batchlib.scan.read_key_stamps
    monkeypatch.setattr(batchlib.scan, "read_key_stamps", lambda *a, **k: opened.append(a[0]) or original(*a, **k))
    results = run(folder, raw, container_chain())
    assert [r.processed for r in results.values()] == [0, 0, 0]
    assert opened == []
    # A container changed behind the ledger is opened (once), and only that one.
    with open_file(os.path.join(folder, "f003.h5"), "a") as f:
        f.attrs["note"] = "touched"
    results = run(folder, raw, container_chain())
    assert [r.processed for r in results.values()] == [0, 0, 0]
    assert sorted(set(opened)) == [os.path.join(folder, "f003.h5")]


def test_ledger_has_one_record_per_job_and_file(plate):
    folder, raw = plate
    write_inputs(raw, 3)
    run(folder, raw, container_chain())
    ledger = Ledger(os.path.join(folder, "batchlib"), writable=False)
    assert sorted(ledger.records("ImportText")) == ["f000.txt", "f001.txt", "f002.txt"]
    assert sorted(ledger.records("Scale")) == ["f000.h5", "f001.h5", "f002.h5"]
    assert list(ledger.records("SumPlate")) == ["plate_sum.txt"]
    record = ledger.get("Scale", "f001.h5")
    assert record.state == "done" and record.version == "1" and record.host
    assert list(record.inputs) == ["f001.h5::raw"] and list(record.outputs) == ["f001.h5::scaled"]
    assert record.duration >= 0 and record.error is None
