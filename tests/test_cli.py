"""The batchlib command: status --json shape, explain, exit codes."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from sample_jobs import CopyText, ImportText, Scale, write_inputs

from batchlib import run_workflow
from batchlib.cli import main
from batchlib.state.lock import LOCK_NAME, FolderLock

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


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
    assert set(status) == {"folder", "lock", "jobs", "watch", "batch"} and status["watch"] is None
    assert status["batch"] is None
    assert status["folder"] == os.path.abspath(folder) and status["lock"] is None
    assert list(status["jobs"]) == ["CopyText", "ImportText", "Scale"]
    for counts in status["jobs"].values():
        assert set(counts) == {"done", "failed", "invalid", "pending", "missing", "missing_inputs", "state"}
    nothing_missing = {"missing": 0, "missing_inputs": {}}
    assert status["jobs"]["CopyText"] == {
        "done": 4,
        "failed": 1,
        "invalid": 1,
        "pending": 2,
        "state": "failed_outputs",
        **nothing_missing,
    }
    # ImportText cannot read "INVALID" or "FAIL" as numbers; Scale skips what it did not make.
    assert status["jobs"]["ImportText"]["failed"] == 2
    # Pending in Scale: what ImportText would make first (2 new files, 2 retried failures).
    assert status["jobs"]["Scale"] == {
        "done": 4,
        "failed": 0,
        "invalid": 0,
        "pending": 4,
        "state": "processed",
        **nothing_missing,
    }


def test_status_shows_the_lock_holder(plate, capsys):
    folder, _ = make_plate(plate)
    with FolderLock(os.path.join(folder, "batchlib"), "other"):
        assert main(["status", folder, "--json"]) == 0
    lock = json.loads(capsys.readouterr().out)["lock"]
    assert lock["pid"] == os.getpid() and set(lock) == {"pid", "host", "since", "stale"} and lock["stale"] is False
    assert main(["status", folder]) == 0  # the lock is gone again
    assert "lock:   free" in capsys.readouterr().out


def test_status_calls_the_lock_of_a_dead_process_stale(plate, capsys):
    folder, _ = make_plate(plate)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid, host, since = int(dead.stdout), socket.gethostname(), "2025-05-01T10:00:00+02:00"
    holder = {"pid": pid, "host": host, "since": since, "pid_start": None, "workflow": "wf", "ttl": 120.0}
    with open(os.path.join(folder, "batchlib", LOCK_NAME), "w") as f:
        json.dump({**holder, "heartbeat": time.time()}, f)  # a fresh heartbeat: only the dead pid makes it stale
    assert main(["status", folder, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["lock"] == {"pid": pid, "host": host, "since": since, "stale": True}
    assert main(["status", folder]) == 0
    table = capsys.readouterr().out
    assert f"lock:   stale: pid {pid} on {host} since {since} no longer runs (the next run breaks it" in table


def test_status_json_is_one_line_shaped_like_the_readme_example(plate, capsys):
    folder, _ = make_plate(plate)
    assert main(["status", folder, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    status = json.loads(out)
    with open(README) as f:
        example = f.read().split("`status --json` prints exactly:")[1].split("```json\n")[1].split("\n```")[0]
    assert "\n" not in example
    documented = json.loads(example)
    assert list(documented) == list(status)
    assert list(next(iter(documented["jobs"].values()))) == list(next(iter(status["jobs"].values())))


def test_demo_help_says_where_the_results_go(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "results to <folder>/DemoPlate" in " ".join(capsys.readouterr().out.split())  # help text wraps


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


def test_explain_follows_the_chain(plate, capsys):
    folder, raw = make_plate(plate)
    write_inputs(raw, 1, start=6)
    assert main(["explain", folder]) == 0
    out = capsys.readouterr().out
    # The new raw file runs in ImportText, and what ImportText would make runs in Scale.
    assert "run  f006.txt: new" in out
    assert "Scale: 3 would run, 4 up to date, 0 invalid" in out
    assert "run  f006.h5: input pending from ImportText" in out
    # A file that would be remade (ImportText retries its failure) is pending downstream too.
    assert "run  f005.h5: input pending from ImportText" in out


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


_EXIT_SCRIPT = """
import atexit, os, sys
from batchlib.cli import run_and_exit_code

folder, use_it = sys.argv[1], sys.argv[2] == "1"

class CycleMarker:  # in a reference cycle: only the garbage collector frees it
    def __init__(self):
        self.path = os.path.join(folder, "collected")
        self.myself = self
    def __del__(self, _open=os.open, _close=os.close, flags=os.O_CREAT | os.O_WRONLY):
        _close(_open(self.path, flags))

marker = CycleMarker()
atexit.register(lambda: open(os.path.join(folder, "atexit"), "w").close())
sys.exit(run_and_exit_code(lambda: {}) if use_it else 0)
"""


def test_workflow_processes_skip_the_final_garbage_collection(tmp_path):
    script = tmp_path / "exit_script.py"
    script.write_text(_EXIT_SCRIPT)
    for use_it in ("0", "1"):
        folder = tmp_path / use_it
        folder.mkdir()
        subprocess.run([sys.executable, str(script), str(folder), use_it], check=True)
        assert (folder / "atexit").exists()  # atexit handlers run either way
        # Python collects the cycle at exit unless run_and_exit_code froze it.
        assert (folder / "collected").exists() == (use_it == "0")
