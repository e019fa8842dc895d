"""Invalid inputs and failing outputs, with and without the ignore flags."""

import json
import os

from sample_jobs import BatchedCopy, CopyText, ImportText, Scale, SumPlate, read_text, write_inputs

from batchlib import exit_code, run_workflow
from batchlib.state.ledger import Ledger


def run(folder, raw, jobs, **kwargs):
    return run_workflow("wf", folder, jobs, input_folder=raw, progress=False, **kwargs)


def status(folder, name):
    with open(os.path.join(folder, "batchlib", f"{name}.status")) as f:
        return json.load(f)


def test_invalid_inputs_stop_the_workflow_without_ignore(plate):
    folder, raw = plate
    write_inputs(raw, 3)
    write_inputs(raw, 1, start=3, content="INVALID")
    results = run(folder, raw, [CopyText(), CopyText(identifier="again", output_ext=".out2")])
    first = results["CopyText"]
    assert (first.processed, first.invalid, first.state) == (3, 1, "invalid_inputs")
    assert first.stops_workflow and exit_code(results) == 1
    assert results["CopyText_again"].state == "not_run"
    assert not os.path.exists(os.path.join(folder, "f003.out"))  # never passed to run
    assert status(folder, "CopyText")["invalid"] == {"f003.txt": "f003.txt is marked INVALID"}
    assert status(folder, "wf")["state"] == "stopped"


def test_invalid_inputs_are_skipped_with_ignore(plate):
    folder, raw = plate
    write_inputs(raw, 3)
    write_inputs(raw, 1, start=3, content="INVALID")
    results = run(
        folder,
        raw,
        [CopyText(), CopyText(identifier="again", input_pattern="*.out", output_ext=".out2", input_folder=folder)],
        ignore_invalid_inputs=True,
    )
    assert exit_code(results) == 0
    assert results["CopyText"].invalid == 1 and results["CopyText_again"].processed == 3
    # Still invalid on rerun without being validated again, still reported.
    again = run(folder, raw, [CopyText()], ignore_invalid_inputs=True)["CopyText"]
    assert (again.processed, again.skipped, again.invalid) == (0, 3, 1)
    # Fixing the file makes it run.
    with open(os.path.join(raw, "f003.txt"), "w") as f:
        f.write("fixed")
    fixed = run(folder, raw, [CopyText()])["CopyText"]
    assert (fixed.processed, fixed.invalid, fixed.state) == (1, 0, "processed")
    assert status(folder, "CopyText")["invalid"] == {}


def test_failures_are_per_file(plate):
    folder, raw = plate
    write_inputs(raw, 6)
    with open(os.path.join(raw, "f002.txt"), "w") as f:
        f.write("FAIL")
    # Batches of 4: the failing file's batch-mates still succeed.
    results = run(folder, raw, [BatchedCopy()], ignore_failed_outputs=True)
    result = results["BatchedCopy"]
    assert (result.processed, result.failed) == (5, 1)
    assert result.failed_files == {"f002.txt": "RuntimeError: cannot process f002.txt"}
    assert sorted(n for n in os.listdir(folder) if n.endswith(".out")) == [f"f{i:03d}.out" for i in (0, 1, 3, 4, 5)]
    assert exit_code(results) == 0
    record = Ledger(os.path.join(folder, "batchlib"), writable=False).get("BatchedCopy", "f002.txt")
    assert record.state == "failed" and "cannot process" in record.error


def test_failed_outputs_stop_the_workflow_without_ignore(plate):
    folder, raw = plate
    write_inputs(raw, 3)
    with open(os.path.join(raw, "f001.txt"), "w") as f:
        f.write("FAIL")
    results = run(folder, raw, [CopyText(), CopyText(identifier="next", output_ext=".o2")])
    assert results["CopyText"].state == "failed_outputs" and results["CopyText"].processed == 2
    assert results["CopyText_next"].state == "not_run"
    assert exit_code(results) == 1
    assert status(folder, "CopyText")["failed"] == {"f001.txt": "RuntimeError: cannot process f001.txt"}
    # Nothing computed is lost: the rerun after the fix only does the failed file.
    with open(os.path.join(raw, "f001.txt"), "w") as f:
        f.write("ok now")
    results = run(folder, raw, [CopyText(), CopyText(identifier="next", output_ext=".o2")])
    assert results["CopyText"].processed == 1 and results["CopyText"].skipped == 2
    assert exit_code(results) == 0
    assert status(folder, "CopyText")["failed"] == {}  # stale entry cleared


def test_ignore_failed_outputs_goes_on_and_downstream_skips_them(plate):
    folder, raw = plate
    write_inputs(raw, 3)
    with open(os.path.join(raw, "f001.txt"), "w") as f:
        f.write("nan FAIL")

    class FailingScale(Scale):
        def run(self, input_files, output_files, **kwargs):
            if any("f001" in p for p in input_files):
                raise ValueError("scale failed")
            super().run(input_files, output_files, **kwargs)

    results = run(folder, raw, [ImportText(), FailingScale(), SumPlate()], ignore_failed_outputs=True)
    assert results["FailingScale"].failed == 1
    plate_job = results["SumPlate"]
    assert plate_job.processed == 1 and "f001.h5" in plate_job.invalid_files
    assert read_text(os.path.join(folder, "plate_sum.txt")).startswith("2 ")
    assert exit_code(results) == 0


def test_run_that_writes_no_output_fails(plate):
    folder, raw = plate
    write_inputs(raw, 2)

    class Lazy(CopyText):
        def run(self, input_files, output_files, **kwargs):
            pass

    result = run(folder, raw, [Lazy()], ignore_failed_outputs=True)["Lazy"]
    assert result.failed == 2 and "wrote no output" in result.failed_files["f000.txt"]
    assert [n for n in os.listdir(folder) if n != "batchlib"] == []  # no temporaries left


def test_container_job_must_write_its_keys(plate):
    folder, raw = plate
    write_inputs(raw, 2)

    class Forgetful(Scale):
        def run(self, input_files, output_files, **kwargs):
            pass

    results = run(folder, raw, [ImportText(), Forgetful()], ignore_failed_outputs=True)
    assert results["Forgetful"].failed == 2
    assert "lacks output key(s) scaled" in results["Forgetful"].failed_files["f000.h5"]


def test_corrupt_container_is_rebuilt_from_raw(plate):
    folder, raw = plate
    write_inputs(raw, 3)
    run(folder, raw, [ImportText()])
    with open(os.path.join(folder, "f001.h5"), "wb") as f:
        f.write(b"this is not hdf5")
    results = run(folder, raw, [ImportText(), Scale()])
    # The job that creates the container rebuilds it; the unreadable file is kept aside.
    assert [results["ImportText"].processed, results["Scale"].processed] == [1, 3]
    assert [n[-7:] for n in os.listdir(os.path.join(folder, "batchlib", "corrupt"))] == ["f001.h5"]
    results = run(folder, raw, [ImportText(), Scale()])
    assert [results["ImportText"].processed, results["Scale"].processed] == [0, 0]


def test_unreadable_container_is_an_invalid_input_with_its_name(plate):
    folder, raw = plate
    write_inputs(raw, 2)
    run(folder, raw, [ImportText()])
    with open(os.path.join(folder, "f001.h5"), "wb") as f:
        f.write(b"garbage")
    result = run_workflow("wf", folder, [Scale()], ignore_invalid_inputs=True, progress=False)["Scale"]
    assert result.processed == 1 and result.invalid == 1
    assert "f001.h5" in result.invalid_files["f001.h5"] and "cannot open container" in result.invalid_files["f001.h5"]
