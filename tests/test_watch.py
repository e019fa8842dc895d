"""Watch mode: a simulated microscope writes a plate over time; the watcher's results equal a batch run's."""

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tifffile
from sample_jobs import CopyText

from batchlib import run_workflow
from batchlib.errors import FolderLockedError
from batchlib.io import open_file, read_plate_table
from batchlib.jobs.aggregate import AggregateTables
from batchlib.jobs.importer import ImportImages
from batchlib.jobs.measure import MeasureObjects
from batchlib.jobs.segmentation import SegmentCells, SegmentNucleiThreshold
from batchlib.report import folder_status, format_status
from batchlib.synthetic import synthetic_site
from batchlib.watch import watch_workflow

CHANNELS = "DAPI,WF_GFP,TRITC"
HERE = os.path.dirname(__file__)


def tiff_bytes(seed: int, shape=(96, 96)) -> bytes:
    channels, _, _ = synthetic_site(shape, n_nuclei=8, seed=seed)
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer, np.stack([channels["nuclei"], channels["cells"], channels["marker"]]), photometric="minisblack"
    )
    return buffer.getvalue()


def raw_name(well: str, site: int) -> str:
    return f"Well{well}_Point{well}_{site:04d}_Channel{CHANNELS}_Seq{site:04d}.tiff"


def jobs(raw):
    return [
        ImportImages({"DAPI": "nuclei", "WF_GFP": "cells", "TRITC": "marker"}, input_folder=raw),
        SegmentNucleiThreshold("nuclei"),
        SegmentCells(cell_key="cells"),
        MeasureObjects(["nuclei", "cells", "marker"], solidity=False),
        AggregateTables(min_cells=1, focus_channel=None),
    ]


def acquire(raw, pause: float):
    """The microscope: 6 images over time, one in two pieces with a pause, one corrupt, one rewritten later."""
    for i, well in enumerate(["C01", "C01", "C02", "C02"]):
        (raw / raw_name(well, i)).write_bytes(tiff_bytes(i))
        time.sleep(0.2)
    data = tiff_bytes(10)
    with open(raw / raw_name("D01", 0), "wb") as f:  # written in pieces, pausing between them
        f.write(data[: len(data) // 2])
        f.flush()
        time.sleep(pause)
        f.write(data[len(data) // 2 :])
    (raw / raw_name("D01", 1)).write_bytes(b"II*\x00 this is not a TIFF")  # corrupt
    time.sleep(1.5)
    (raw / raw_name("C01", 0)).write_bytes(tiff_bytes(20))  # rewritten after it was imported


def image_table(folder):
    with open_file(os.path.join(folder, f"{os.path.basename(folder)}_table.hdf5"), "r") as f:
        return read_plate_table(f, "images").drop(columns=["focus_score"], errors="ignore")


@pytest.mark.parametrize("poll", [None, 0.2], ids=["file events", "polling"])
def test_watching_an_acquisition_gives_what_a_batch_run_gives(tmp_path, poll):
    raw, watched, batch = tmp_path / "raw", tmp_path / "W", tmp_path / "B"
    raw.mkdir()
    writer = threading.Thread(target=acquire, args=(raw, 0.6))
    writer.start()
    results = watch_workflow(
        "Watch", watched, jobs(raw), settle=1.0, poll=poll, plate_interval=0.5, until_idle=2.5, progress=False
    )
    writer.join()
    assert raw_name("D01", 1) in results["ImportImages"].invalid_files  # the corrupt file, recorded; watching went on
    half = raw_name("D01", 0)
    assert half not in results["ImportImages"].invalid_files  # never taken while it was written
    run_workflow("Batch", batch, jobs(raw), ignore_invalid_inputs=True, progress=False)
    got, want = image_table(str(watched)), image_table(str(batch))
    assert got["image_name"].tolist() == want["image_name"].tolist() and len(got) == 5
    np.testing.assert_allclose(got.select_dtypes("number"), want.select_dtypes("number"))
    status = json.loads((watched / "batchlib" / "watch.status").read_text())
    assert status["state"] == "complete" and not status["watching"]
    assert not (watched / "batchlib" / ".lock").exists() and not any(
        n.endswith(".lock") for n in os.listdir(watched / "batchlib")
    )


WATCHER = """
import sys
sys.path.insert(0, {here!r})
from test_watch import jobs
from batchlib.watch import watch_workflow
watch_workflow("Watch", {folder!r}, jobs({raw!r}), settle=0.3, poll=0.2, forever=True, progress=False)
print("returned", flush=True)
"""


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stop_signal_ends_after_the_batch_releases_the_lock_and_status_shows_the_watch(tmp_path, stop_signal):
    raw, folder = tmp_path / "raw", tmp_path / "W"
    raw.mkdir()
    (raw / raw_name("C01", 0)).write_bytes(tiff_bytes(0))
    script = WATCHER.format(here=HERE, folder=str(folder), raw=str(raw))
    watcher = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not (folder / f"WellC01_PointC01_0000_Channel{CHANNELS}_Seq0000.h5").exists():
            assert watcher.poll() is None and time.monotonic() < deadline, (
                watcher.stderr.read() if watcher.poll() else ""
            )
            time.sleep(0.2)
        # Another run meets the lock, held by the watcher.
        with pytest.raises(FolderLockedError, match="watching"):
            run_workflow("Other", folder, jobs(raw), progress=False)
        assert "watched since" in format_status(folder_status(folder))
        watcher.send_signal(stop_signal)
        out, err = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0 and "returned" in out, err
    status = json.loads((folder / "batchlib" / "watch.status").read_text())
    assert status["state"] == "stopped"
    assert "not watched (stopped" in format_status(folder_status(folder))
    run_workflow("After", folder, jobs(raw), progress=False)  # the lock is free


def test_a_restart_after_kill_9_redoes_nothing(tmp_path):
    raw, folder = tmp_path / "raw", tmp_path / "W"
    raw.mkdir()
    for i in range(3):
        (raw / raw_name("C01", i)).write_bytes(tiff_bytes(i))
    script = WATCHER.format(here=HERE, folder=str(folder), raw=str(raw))
    watcher = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (folder / "W_table.hdf5").exists():
            assert watcher.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        watcher.kill()  # kill -9
        watcher.wait()
    results = watch_workflow("Watch", folder, jobs(raw), settle=0.2, poll=0.1, until_idle=0.5, progress=False)
    assert all(r.processed == 0 for name, r in results.items() if name != "AggregateTables")
    assert results["ImportImages"].skipped == 3


def test_cell_analysis_workflow_watches_with_its_options(tmp_path):
    from batchlib.cell_analysis import cell_analysis_main

    raw, folder = tmp_path / "raw", tmp_path / "WA"
    raw.mkdir()
    for i in range(2):
        (raw / raw_name("C01", i)).write_bytes(tiff_bytes(i))
    argv = ["--folder", str(folder), "--input-folder", str(raw), "--nuclei-method", "threshold", "--no-progress"]
    argv += ["--steps", "import,segment_nuclei,segment_cells,measure,aggregate", "--min-cells", "1"]
    argv += ["--watch", "--settle", "0.2", "--poll", "0.2", "--until-idle", "1", "--expected-images", "2"]
    assert cell_analysis_main(argv) == 0
    assert len(image_table(str(folder))) == 2


def test_plates_root_watches_two_plates_at_once_and_a_plate_that_appears_later(tmp_path):
    raw_root, out_root = tmp_path / "raw", tmp_path / "out"
    for plate in ("P1", "P2"):
        (raw_root / plate).mkdir(parents=True)
        for i in range(2):
            tifffile.imwrite(raw_root / plate / f"img{i}.tiff", np.full((2, 8, 8), i + 1, np.uint16))
    script = os.path.join(HERE, "..", "workflows", "custom_job_example.py")
    command = [sys.executable, script, "--plates-root", str(raw_root), "--folder", str(out_root), "--no-progress"]
    command += ["--settle", "0.3", "--poll", "0.3", "--until-idle", "3", "--plate-interval", "0"]
    root = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    (raw_root / "P3").mkdir()  # a new plate folder, after the start
    tifffile.imwrite(raw_root / "P3" / "img0.tiff", np.full((2, 8, 8), 7, np.uint16))
    out, err = root.communicate(timeout=120)
    assert root.returncode == 0, err
    for plate, n in (("P1", 2), ("P2", 2), ("P3", 1)):
        table = (out_root / plate / "channel_statistics.csv").read_text().splitlines()
        assert len(table) == n + 1, (plate, table)
        assert json.loads((out_root / plate / "batchlib" / "watch.status").read_text())["state"] == "complete"


@pytest.mark.parametrize("kill_after", [0.5, 1.5, 3.0])
def test_kill_9_at_any_point_then_restart_gives_the_batch_result(tmp_path, kill_after):
    raw, folder, batch = tmp_path / "raw", tmp_path / "W", tmp_path / "B"
    raw.mkdir()
    for i in range(6):
        (raw / raw_name("C01" if i < 3 else "C02", i)).write_bytes(tiff_bytes(i))
    script = WATCHER.format(here=HERE, folder=str(folder), raw=str(raw))
    watcher = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(kill_after)  # somewhere in settling, importing, segmenting or aggregating
    watcher.kill()
    watcher.wait()
    watch_workflow("Watch", folder, jobs(raw), settle=0.2, poll=0.1, until_idle=0.5, progress=False)
    run_workflow("Batch", batch, jobs(raw), progress=False)
    got, want = image_table(str(folder)), image_table(str(batch))
    assert got["image_name"].tolist() == want["image_name"].tolist()
    np.testing.assert_allclose(got.select_dtypes("number"), want.select_dtypes("number"))


class WarmedCopy(CopyText):
    """CopyText that records when its warm-up and its runs happen (its warm-up fails with ``fail``)."""

    def __init__(self, log: list, fail: bool = False, **kwargs):
        super().__init__(**kwargs)
        self._log, self._fail = log, fail

    def warm_up(self):
        self._log.append("warm_up")
        if self._fail:
            raise RuntimeError("no model here")

    def run(self, input_files, output_files, **kwargs):
        self._log.append("run")
        super().run(input_files, output_files, **kwargs)


@pytest.mark.parametrize("fail", [False, True], ids=["warm-up", "failing warm-up"])
def test_the_watcher_warms_its_jobs_up_once_before_the_first_run(tmp_path, fail, caplog):
    raw, folder = tmp_path / "raw", tmp_path / "W"
    raw.mkdir()
    (raw / "a.txt").write_text("1")
    log: list = []
    job = WarmedCopy(log, fail, input_folder=str(raw))
    watch_workflow("W", str(folder), [job], input_folder=str(raw), settle=0.2, until_idle=0.5, progress=False)
    assert log[:2] == ["warm_up", "run"] and log.count("warm_up") == 1
    assert (folder / "a.out").exists()
    assert ("warm-up failed" in caplog.text) == fail


WARM_UP_IMPORTS = """
import sys
from batchlib.jobs.importer import ImportImages
from batchlib.jobs.measure import MeasureObjects
for job in (ImportImages({"DAPI": "nuclei"}), MeasureObjects(["nuclei"], input_pattern="*.n5")):
    job.warm_up()
print(sorted(m for m in ("h5py", "isal", "z5py", "zarr") if m in sys.modules))
"""


def test_container_jobs_warm_up_their_container_library():
    """The first image of a watcher does not pay for importing h5py and ISA-L (or z5py) after it arrives."""
    done = subprocess.run([sys.executable, "-c", WARM_UP_IMPORTS], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['h5py', 'isal', 'z5py']", done.stdout + done.stderr
