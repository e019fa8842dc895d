"""Kill -9 in the middle of a run, concurrent runs, stale locks."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from sample_jobs import read_text, write_inputs

from batchlib import FolderLockedError, run_workflow
from batchlib.cli import main as cli_main
from batchlib.io import open_file
from batchlib.state.ledger import Ledger
from batchlib.state.lock import FolderLock, lock_is_stale, read_lock

TESTS = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(TESTS, "wf_script.py")


def start_script(folder, raw, *args):
    env = {**os.environ, "PYTHONPATH": TESTS + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, SCRIPT, folder, raw, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def journal_lines(folder):
    try:
        with open(os.path.join(folder, "batchlib", "ledger.journal"), "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def outputs(folder):
    """Everything the workflow made: text outputs and container datasets."""
    found = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith((".out", ".txt")):
            found[name] = read_text(path)
        elif name.endswith(".h5"):
            with open_file(path, "r") as f:
                found[name] = {k: np.asarray(f[k][:]).tolist() for k in sorted(f)}
    return found


def test_sigkill_mid_run_then_rerun_equals_uninterrupted_run(tmp_path):
    raw = str(tmp_path / "raw")
    write_inputs(raw, 30)
    reference = str(tmp_path / "reference")
    assert start_script(reference, raw).wait(60) == 0

    folder = str(tmp_path / "killed")
    proc = start_script(folder, raw, "--delay", "0.05")
    deadline = time.monotonic() + 30
    while journal_lines(folder) < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    done_before = sum(n.endswith(".out") for n in os.listdir(folder))
    assert 0 < done_before < 30, "the kill must land in the middle of the run"
    assert os.path.exists(os.path.join(folder, "batchlib", ".lock"))  # left behind by the dead run

    rerun = start_script(folder, raw)
    _, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err
    assert "broke a stale lock" in err
    assert outputs(folder) == outputs(reference)
    ledger = Ledger(os.path.join(folder, "batchlib"), writable=False)
    assert all(r.state == "done" for r in ledger.records("CopyText").values())
    assert len(ledger.records("CopyText")) == 30
    assert not [n for n in os.listdir(folder) if n.startswith(".batchlib-tmp")]


def test_second_concurrent_run_exits_75(tmp_path):
    raw = str(tmp_path / "raw")
    write_inputs(raw, 40)
    folder = str(tmp_path / "plate")
    first = start_script(folder, raw, "--delay", "0.05")
    deadline = time.monotonic() + 30
    while read_lock(os.path.join(folder, "batchlib")) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    second = start_script(folder, raw)
    _, err = second.communicate(timeout=30)
    assert second.returncode == 75
    assert f"pid {first.pid}" in err and socket.gethostname() in err
    # With --wait the second run waits for the first, then has nothing left to do.
    waiting = start_script(folder, raw, "--wait")
    assert first.wait(60) == 0
    assert waiting.wait(60) == 0


def test_lock_of_dead_pid_is_broken(plate, caplog):
    folder, raw = plate
    write_inputs(raw, 2)
    dead = subprocess.Popen(["true"])
    dead.wait()
    bookkeeping = os.path.join(folder, "batchlib")
    os.makedirs(bookkeeping)
    with open(os.path.join(bookkeeping, ".lock"), "w") as f:
        json.dump({"pid": dead.pid, "host": socket.gethostname(), "since": "then", "heartbeat": time.time()}, f)
    from sample_jobs import CopyText

    result = run_workflow("wf", folder, [CopyText()], input_folder=raw, progress=False)["CopyText"]
    assert result.processed == 2
    assert read_lock(bookkeeping) is None


def test_lock_of_other_host_is_stale_only_after_ttl():
    fresh = {"pid": 1, "host": "elsewhere", "heartbeat": time.time() - 10, "ttl": 60}
    old = {**fresh, "heartbeat": time.time() - 120}
    assert lock_is_stale(fresh, "here", time.time())[0] is False
    assert lock_is_stale(old, "here", time.time())[0] is True
    assert lock_is_stale({"pid": os.getpid(), "host": "here"}, "here", time.time())[0] is False


def test_live_lock_blocks_and_unlock_needs_force(plate, capsys):
    folder, raw = plate
    write_inputs(raw, 1)
    bookkeeping = os.path.join(folder, "batchlib")
    with FolderLock(bookkeeping, "holder"):
        from sample_jobs import CopyText

        with pytest.raises(FolderLockedError) as info:
            run_workflow("wf", folder, [CopyText()], input_folder=raw, progress=False)
        assert info.value.holder["pid"] == os.getpid()
        assert cli_main(["unlock", folder]) == 75
        assert cli_main(["unlock", folder, "--force"]) == 0
        assert read_lock(bookkeeping) is None


def test_heartbeat_refreshes_the_lock(tmp_path):
    lock = FolderLock(tmp_path, "wf", ttl=0.3)
    lock.acquire()
    try:
        first = read_lock(tmp_path)["heartbeat"]
        time.sleep(0.35)
        assert read_lock(tmp_path)["heartbeat"] > first
    finally:
        lock.release()
    assert read_lock(tmp_path) is None


def test_unreadable_lock_is_broken(tmp_path):
    bookkeeping = tmp_path / "batchlib"
    bookkeeping.mkdir()
    (bookkeeping / ".lock").write_text("{half a lock file")
    lock = FolderLock(bookkeeping, "wf")
    lock.acquire()
    try:
        assert read_lock(bookkeeping)["pid"] == os.getpid()
    finally:
        lock.release()
