"""The batchlib command: status --json shape, explain, exit codes."""

import json
import os
import subprocess
import sys

from sample_jobs import CopyText, ImportText, Scale, write_inputs

from batchlib import run_workflow
from batchlib.cli import main
from batchlib.state.lock import FolderLock


def make_plate(plate):
    folder, raw = plate
    write_inputs(raw, 4)
    write_inputs(raw, 1, start=4, content="INVALID")
    write_inputs(raw, 1, start=5, content="FAIL")
    jobs = [CopyText(), ImportText(input_folder=raw), Scale()]
    run_workflow(
        "wf", folder, jobs, input_folder=raw, ignore_invalid_inputs=True, ignore_failed_outputs=True, progress=False
    )
    return folder, raw


def test_status_json_shape(plate, capsys):
    folder, raw = make_plate(plate)
    write_inputs(raw, 2, start=6)  # new since the run: pending
    assert main(["status", folder, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert set(status) == {"folder", "lock", "jobs"}
    assert status["folder"] == os.path.abspath(folder) and status["lock"] is None
    assert list(status["jobs"]) == ["CopyText", "ImportText", "Scale"]
    for counts in status["jobs"].values():
        assert set(counts) == {"done", "failed", "invalid", "pending", "state"}
    assert status["jobs"]["CopyText"] == {"done": 4, "failed": 1, "invalid": 1, "pending": 2, "state": "failed_outputs"}
    # ImportText cannot read "INVALID" or "FAIL" as numbers; Scale skips what it did not make.
    assert status["jobs"]["ImportText"]["failed"] == 2
    assert status["jobs"]["Scale"] == {"done": 4, "failed": 0, "invalid": 0, "pending": 0, "state": "processed"}


def test_status_shows_the_lock_holder(plate, capsys):
    folder, _ = make_plate(plate)
    with FolderLock(os.path.join(folder, "batchlib"), "other"):
        assert main(["status", folder, "--json"]) == 0
    lock = json.loads(capsys.readouterr().out)["lock"]
    assert lock["pid"] == os.getpid() and set(lock) == {"pid", "host", "since"}


def test_status_table_and_not_run(plate, capsys):
    folder, raw = plate
    write_inputs(raw, 1, content="FAIL")
    # The first job fails and stops the workflow: the second is not run.
    run_workflow(
        "wf", folder, [CopyText(), CopyText(identifier="b", output_ext=".b")], input_folder=raw, progress=False
    )
    assert main(["status", folder]) == 0
    table = capsys.readouterr().out
    assert "CopyText_b" in table and "not_run" in table and "failed_outputs" in table


def test_explain_lists_files_and_reasons(plate, capsys):
    folder, raw = make_plate(plate)
    write_inputs(raw, 1, start=6)
    with open(os.path.join(raw, "f000.txt"), "w") as f:
        f.write("changed")
    os.remove(os.path.join(folder, "f001.out"))
    assert main(["explain", folder, "--job", "CopyText"]) == 0
    out = capsys.readouterr().out
    assert "CopyText: 4 would run, 2 up to date, 1 invalid" in out
    assert "run  f006.txt: new" in out
    assert "run  f000.txt: input changed: f000.txt" in out
    assert "run  f001.txt: output missing: f001.out" in out
    assert "run  f005.txt: failed before: RuntimeError" in out
    assert "skip f004.txt: invalid: f004.txt is marked INVALID" in out


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    assert "no batchlib/ folder" in capsys.readouterr().err
    result = subprocess.run([sys.executable, "-m", "batchlib.cli", "status"], capture_output=True, text=True)
    assert result.returncode == 2


def test_explain_unknown_job_names_it(plate, capsys):
    folder, _ = make_plate(plate)
    assert main(["explain", folder, "--job", "Nope"]) == 2
    assert "--job Nope" in capsys.readouterr().err
