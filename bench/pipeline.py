"""Images per minute of the whole cell-analysis workflow, ``n_jobs=1`` against ``n_jobs=2``.

The demo plate scaled up (``--wells`` wells of a 96-well plate, ``--sites``
sites each, 512 x 512, 3 channels; by default the full plate, 96 x 8 = 768
images; 16 x 24 = 384 until November 2026, see BENCHMARKS.md), every
step of the workflow (``workflows/cell_analysis_workflow.py`` in a new
process: start-up and imports count), each run into a new results folder;
worker processes share the cores (TensorFlow and BLAS threads capped per
worker). Each worker starts Python, TensorFlow and the model once (~4 s),
so small plates measure start-up more than throughput.

The raw plate and one run's results (1.2 + 3.0 GB for 768 images) go to a new folder under ``--folder``
(default the system's temporary folder). On an ext4 file system without a
journal, as on the VM of BENCHMARKS.md, creating the many crop files costs
much more kernel time in the few minutes after many files were deleted
there (ext4 skips recently freed inodes), so leave five minutes after a
previous run, or measure in memory (``--folder /dev/shm``).

``--repeat N`` runs N pairs, alternating which of the two goes first, and
prints each pair's speed-up and their median: on a shared VM a single run of
either can be 10% off. Each run's results are deleted after it, so on such a
disk use ``--folder /dev/shm`` with it.

Run:  python bench/pipeline.py [--wells 96] [--sites 8] [--folder DIR] [--repeat N]
Target: n_jobs=2 at least 1.7x the images per minute of n_jobs=1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("LOGLEVEL", "WARNING")
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "workflows", "cell_analysis_workflow.py")


def main() -> int:
    from batchlib.demo import write_demo_plate
    from batchlib.plate import row_name

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wells", type=int, default=96, help="wells A01, A02, ... (at most 96)")
    parser.add_argument("--sites", type=int, default=8, help="sites per well")
    parser.add_argument("--folder", default=None, help="where to make the work folder (default: temporary folder)")
    parser.add_argument("--repeat", type=int, default=1, help="pairs of runs, alternating which goes first")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="batchlib-bench-pipeline-", dir=args.folder)
    raw = os.path.join(work, "raw")
    wells = {f"{row_name(i // 12)}{i % 12 + 1:02d}": 1.0 + i % 2 for i in range(args.wells)}
    n_images = len(write_demo_plate(raw, wells=wells, sites=args.sites))
    speed_ups = []
    for repeat in range(args.repeat):
        # Alternate which goes first, so a drift of the machine's speed does not favour one.
        order = (1, 2) if repeat % 2 == 0 else (2, 1)
        seconds = {n_jobs: time_workflow(work, raw, n_jobs) for n_jobs in order}
        for n_jobs in order:
            rate = n_images / seconds[n_jobs] * 60
            print(f"n_jobs={n_jobs}: {n_images} images in {seconds[n_jobs]:.1f} s = {rate:.1f} images/min", flush=True)
        speed_ups.append(seconds[1] / seconds[2])
        print(f"speed-up n_jobs=2 / n_jobs=1: {speed_ups[-1]:.2f}x (target >= 1.7x)", flush=True)
    if args.repeat > 1:
        runs = ", ".join(f"{x:.2f}x" for x in speed_ups)
        print(f"median speed-up of {args.repeat} pairs: {statistics.median(speed_ups):.2f}x ({runs})")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def time_workflow(work: str, raw: str, n_jobs: int) -> float:
    """Seconds the workflow script takes on ``raw`` with ``n_jobs`` in a new process; then deletes its results."""
    folder = os.path.join(work, f"plate_{n_jobs}")
    # Start each run with nothing waiting to be written to disk: otherwise the kernel writes
    # the previous run's gigabyte of results back while this run is timed.
    os.sync()
    # Each run is the workflow script in a new Python process, imports included, as users run it.
    options = ["--folder", folder, "--input-folder", raw, "--n-jobs", str(n_jobs), "--no-progress"]
    start = time.perf_counter()
    code = subprocess.run([sys.executable, SCRIPT, *options]).returncode
    seconds = time.perf_counter() - start
    assert code == 0, f"workflow failed with n_jobs={n_jobs}"
    shutil.rmtree(folder)
    return seconds


if __name__ == "__main__":
    sys.exit(main())
