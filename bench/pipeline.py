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

``--per-job`` instead runs the workflow once at ``n_jobs=1`` on each of two
plates, the 192-image plate (24 wells x 8 sites of 512 x 512) and camera-sized
images (2 wells x 4 sites of 2048 x 2048, ~900 nuclei each), and prints each
job's seconds (from the workflow's status file), the whole run (the script's
wall time, start-up included) over the StarDist job, the crop step over the
StarDist job, the files written per image and the run's peak RSS.
Targets: whole run <= 2x the StarDist job; crop step <= 0.2x; files per image <= 3; peak RSS < 2 GB.
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
    parser.add_argument("--per-job", action="store_true", help="per-job seconds at n_jobs=1 on two plates (above)")
    parser.add_argument("--only", choices=["512", "2048"], help="with --per-job: only this plate")
    parser.add_argument("--keep", action="store_true", help="with --per-job: keep the plates (and print where)")
    parser.add_argument("--n-jobs", type=int, default=1, help="with --per-job: worker processes (peak RSS per process)")
    args = parser.parse_args()
    if args.per_job:
        return per_job(args)
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


#: Job names of the per-job table, in workflow order, and their short column names.
COLUMNS = {
    "SegmentNucleiStarDist": "StarDist",
    "CropCells": "crops",
    "IndexCrops": "crop index",
    "OmeZarrExport": "OME-Zarr",
    "MeasureObjects": "measure",
    "SegmentCells": "cells",
    "ImportImages": "import",
    "AggregateTables": "aggregate",
    "ExportProfiles": "export",
    "QualityControl": "QC",
}


def files_by_kind(folder: str) -> dict[str, int]:
    """Files of a plate folder (bookkeeping left out) by kind of output (``batchlib.s3.local.file_kind``)."""
    from batchlib.s3.local import file_kind

    kinds: dict[str, int] = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not (root == folder and d == "batchlib")]
        for name in names:
            kind = file_kind(os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/"))
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def per_job(args) -> int:
    """Per-job seconds, whole run / StarDist, files per image and peak RSS at n_jobs=1 (``--per-job``)."""
    import json
    import resource

    from batchlib.demo import write_demo_plate
    from batchlib.plate import row_name

    plates = {
        "512": ("192 images 512 x 512", {f"{row_name(i // 12)}{i % 12 + 1:02d}": 1.0 + i % 2 for i in range(24)}, 8,
                (512, 512), 60),
        "2048": ("8 images 2048 x 2048", {"A01": 1.0, "A02": 2.0}, 4, (2048, 2048), 900),
    }  # fmt: skip
    work = tempfile.mkdtemp(prefix="batchlib-bench-pipeline-", dir=args.folder)
    header = " | ".join(["plate", *COLUMNS.values(), "whole run", "crops / StarDist", "files per image", "peak RSS"])
    lines = []
    for key, (title, wells, sites, shape, n_nuclei) in plates.items():
        if args.only and key != args.only:
            continue
        raw, folder = os.path.join(work, f"raw{key}"), os.path.join(work, f"Plate{key}")
        n_images = len(write_demo_plate(raw, wells=wells, sites=sites, shape=shape, n_nuclei=n_nuclei))
        os.sync()
        options = ["--folder", folder, "--input-folder", raw, "--n-jobs", str(args.n_jobs), "--no-progress"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        code = subprocess.run([sys.executable, SCRIPT, *options]).returncode
        whole = time.perf_counter() - start
        assert code == 0, f"workflow failed on {title}"
        # The largest of the script's processes (with --n-jobs 2: the driver or a worker), in KiB on Linux.
        peak_gb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 2**20
        with open(os.path.join(folder, "batchlib", "CellAnalysisWorkflow.status")) as f:
            seconds = {job: entry.get("seconds") or 0.0 for job, entry in json.load(f)["jobs"].items()}
        stardist = seconds["SegmentNucleiStarDist"]
        crops = seconds.get("CropCells", 0.0) + seconds.get("IndexCrops", 0.0)
        kinds = files_by_kind(folder)
        per_image = (kinds.get("containers", 0) + kinds.get("crops", 0)) / n_images
        files = sum(kinds.values())
        cells = [f"{seconds.get(job, 0.0):.1f}" for job in COLUMNS]
        lines.append(
            " | ".join([title, *cells, f"{whole:.0f} s ({whole / stardist:.1f}x StarDist)", f"{crops / stardist:.2f}x",
                        f"{per_image:.1f} ({files / n_images:.1f} in all)", f"{peak_gb:.2f} GB"])
        )  # fmt: skip
        print(f"{title}: whole run {whole:.1f} s = {whole / stardist:.2f}x the StarDist job ({stardist:.1f} s; "
              f"target <= 2x); crop step {crops / stardist:.2f}x (target <= 0.2x); {per_image:.1f} files "
              f"per image (containers and crops; target <= 3), {files / n_images:.1f} in all: {kinds}; "
              f"peak RSS {peak_gb:.2f} GB (target < 2 GB)", flush=True)  # fmt: skip
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print()
    print("| " + header + " |")
    print("|" + "---|" * (len(COLUMNS) + 5))
    for line in lines:
        print("| " + line + " |")
    if args.keep:
        print(f"plates kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
