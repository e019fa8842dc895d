"""A full disk (and other missing resources) stops a run with one line, its lock released, nothing half recorded."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest
from sample_jobs import FillsTheDisk, write_inputs

from batchlib import run_workflow
from batchlib.cell_analysis import cell_analysis_main
from batchlib.demo import write_demo_plate
from batchlib.errors import ResourceError
from batchlib.io import open_file, read_key_stamps, read_plate_table
from batchlib.state.ledger import DONE, Ledger


@pytest.fixture
def small_disk(tmp_path):
    """A real, small file system (tmpfs of 1200 KiB); ``resize(size)`` changes its size.

    Skips where mounting is refused (not root).
    """
    disk = tmp_path / "disk"
    disk.mkdir()

    def mount(size: str, *extra: str) -> None:
        options = ",".join([f"size={size}", *extra])
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)], capture_output=True)
        if done.returncode:
            pytest.skip(f"mount -t tmpfs refused here: {done.stderr.decode().strip()}")

    mount("1200k")
    assert os.path.ismount(disk)  # never fill the real disk
    yield disk, lambda size: mount(size, "remount")
    subprocess.run(["umount", "--lazy", str(disk)], check=False)


@pytest.fixture(scope="module")
def raw_plate(tmp_path_factory):
    """8 raw images, and the image table a run on a roomy disk makes of them."""
    root = tmp_path_factory.mktemp("roomy")
    raw = str(root / "raw")
    write_demo_plate(raw, wells={"C01": 1.0, "C02": 2.0}, sites=4, shape=(192, 192), n_nuclei=12)
    assert run(str(root / "R"), raw) == 0
    return raw, image_table(str(root / "R"))


def image_table(plate: str):
    with open_file(os.path.join(plate, f"{os.path.basename(plate)}_table.hdf5"), "r") as f:
        return read_plate_table(f, "images").drop(columns=["focus_score"])


def run(folder, raw, *extra):
    options = ["--folder", folder, "--input-folder", raw, "--nuclei-method", "threshold", "--no-progress"]
    return cell_analysis_main([*options, "--min-cells", "1", *extra])


# Sizes at which the disk fills while importing, while segmenting, and while writing the plate's outputs.
@pytest.mark.parametrize("size", ["600k", "1800k", "5000k"])
def test_full_disk_stops_the_run_and_the_rerun_completes(small_disk, raw_plate, size, capsys):
    disk, resize = small_disk
    resize(size)
    raw, roomy_table = raw_plate
    folder = str(disk / "P")

    assert run(folder, raw) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("batchlib: no space left on device while writing ")
    assert err[-1].endswith(": free space and rerun") and "Traceback" not in "\n".join(err)
    assert not os.path.exists(os.path.join(folder, "batchlib", ".lock"))
    # Every record kept is of work that was complete: each output it names is as the job stamped it, or gone
    # (an HDF5 container being written when the disk filled is given up, and rebuilt by the rerun).
    ledger = Ledger(os.path.join(folder, "batchlib"), writable=False)
    for job in ledger.jobs():
        for record in ledger.records(job).values():
            for ref, stamp in record.outputs.items() if record.state == DONE else ():
                name, _, key = ref.partition("::")
                if key and os.path.exists(os.path.join(folder, name)):
                    assert read_key_stamps(os.path.join(folder, name), [key], "")[key] == stamp

    resize("60m")  # space freed: a plain rerun finishes the work, as a run on a roomy disk does
    assert run(folder, raw) == 0
    assert image_table(folder).equals(roomy_table)


@pytest.mark.parametrize(
    "error, words",
    [
        (errno.ENOSPC, "no space left on device while writing {out}: free space and rerun"),
        (errno.EDQUOT, "disk quota exceeded while writing {out}: free space or raise the quota, and rerun"),
        (errno.EROFS, "read-only file system while writing {out}: make the plate folder writable and rerun"),
        (errno.EMFILE, "too many open files while writing {out}: raise the limit (ulimit -n) or use fewer workers"),
    ],
)
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_resource_errors_stop_the_run(plate, error, words, n_jobs):
    folder, raw = plate
    write_inputs(raw, 5)
    job = FillsTheDisk(error)
    with pytest.raises(ResourceError) as raised:
        run_workflow("wf", folder, [job], input_folder=raw, n_jobs=n_jobs, progress=False)
    assert str(raised.value).startswith(words.format(out=os.path.join(folder, "f002.out")))
    assert not os.path.exists(os.path.join(folder, "batchlib", ".lock"))
    records = Ledger(os.path.join(folder, "batchlib"), writable=False).records("FillsTheDisk")
    assert "f002.txt" not in records  # no record of the unfinished file, not even a failure
    assert all(r.state == DONE for r in records.values())
    # Once the cause is gone, the rerun does the rest and nothing twice.
    job._error = 0
    result = run_workflow("wf", folder, [job], input_folder=raw, progress=False)["FillsTheDisk"]
    assert result.processed == 5 - len(records) and result.skipped == len(records)


def test_journal_on_a_full_disk_keeps_no_torn_line(small_disk):
    disk, _ = small_disk
    ledger = Ledger(disk / "batchlib")
    ledger.set_job_spec("J", {"a": 1})
    with open(disk / "filler", "wb", buffering=0) as f, pytest.raises(OSError):  # fill the disk to the last block
        while True:
            f.write(b"x" * 4096)
    with pytest.raises(OSError) as raised:
        for i in range(10_000):
            ledger.set_job_spec(f"J{i}", {"text": "y" * 500})
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(disk / "batchlib" / "ledger.journal")
    ledger.close()
    os.remove(disk / "filler")
    with open(disk / "batchlib" / "ledger.journal", "rb") as f:
        assert f.read().endswith(b"\n")  # whole lines only: the next run appends cleanly
    again = Ledger(disk / "batchlib")
    assert again.job_spec("J") == {"a": 1}
