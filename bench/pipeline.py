"""Images per minute of the whole cell-analysis workflow, ``n_jobs=1`` against ``n_jobs=2``.

The demo plate scaled up (``--wells`` wells of a 96-well plate, ``--sites``
sites each, 512 x 512, 3 channels; by default 16 x 24 = 384 images), every
step of the workflow (``workflows/cell_analysis_workflow.py`` in a new
process: start-up and imports count), each run into a new results folder;
worker processes share the cores (TensorFlow and BLAS threads capped per
worker). Each worker starts Python, TensorFlow and the model once (~4 s),
so small plates measure start-up more than throughput.

The results (about 2 GB for 384 images) go to a new folder under ``--folder``
(default the system's temporary folder). On an ext4 file system without a
journal, as on the VM of BENCHMARKS.md, creating the 92k crop files costs
much more kernel time in the few minutes after many files were deleted
there (ext4 skips recently freed inodes), so leave five minutes after a
previous run, or measure in memory (``--folder /dev/shm``).

Run:  python bench/pipeline.py [--wells 16] [--sites 24] [--folder DIR]
Target: n_jobs=2 at least 1.7x the images per minute of n_jobs=1.
"""

from __future__ import annotations

import argparse
import os
import shutil
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
    parser.add_argument("--wells", type=int, default=16, help="wells A01, A02, ... (at most 96)")
    parser.add_argument("--sites", type=int, default=24, help="sites per well")
    parser.add_argument("--folder", default=None, help="where to make the work folder (default: temporary folder)")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="batchlib-bench-pipeline-", dir=args.folder)
    raw = os.path.join(work, "raw")
    wells = {f"{row_name(i // 12)}{i % 12 + 1:02d}": 1.0 + i % 2 for i in range(args.wells)}
    n_images = len(write_demo_plate(raw, wells=wells, sites=args.sites))
    rates = {}
    for n_jobs in (1, 2):
        folder = os.path.join(work, f"plate_{n_jobs}")
        # Start each run with nothing waiting to be written to disk: otherwise the kernel writes
        # the previous run's gigabyte of results back while this run is timed.
        os.sync()
        # Each run is the workflow script in a new Python process, imports included, as users run it.
        options = ["--folder", folder, "--input-folder", raw, "--n-jobs", str(n_jobs), "--no-progress"]
        command = [sys.executable, SCRIPT, *options]
        start = time.perf_counter()
        code = subprocess.run(command).returncode
        seconds = time.perf_counter() - start
        assert code == 0, f"workflow failed with n_jobs={n_jobs}"
        rates[n_jobs] = n_images / seconds * 60
        print(f"n_jobs={n_jobs}: {n_images} images in {seconds:.1f} s = {rates[n_jobs]:.1f} images/min", flush=True)
    print(f"speed-up n_jobs=2 / n_jobs=1: {rates[2] / rates[1]:.2f}x (target >= 1.7x)")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
