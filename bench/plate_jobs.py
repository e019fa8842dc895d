"""Cost of the plate-level table jobs after a few new images, on a small and on a large plate.

A plate of N containers (96 and 768) holding only the cell tables MeasureObjects
writes (C cells each, random features) is aggregated and exported once by job
objects that then stay alive, as in a watcher; then 8 images (one well) are
added and the same job objects run again. The time of that second run is
compared between the plates: the median of ADDITIONS such additions, one
well after another (a single run varies by a third on a shared 2-core VM).
Target (watch-mode issue): the large plate's at most 1.5x the small one's.

Run:  python bench/plate_jobs.py [--cells 100] [--additions 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import pandas as pd

from batchlib import run_workflow
from batchlib.io import open_file, write_table
from batchlib.jobs.aggregate import AggregateTables
from batchlib.jobs.export import ExportProfiles

FEATURES = 30


def write_container(folder: str, well: str, site: int, n_cells: int, rng: np.random.Generator) -> None:
    label_id = np.arange(1, n_cells + 1)

    def table(prefix: str) -> pd.DataFrame:
        values = {f"{prefix}_Feature_{k}": rng.random(n_cells) for k in range(FEATURES)}
        return pd.DataFrame({"label_id": label_id, **values})

    with open_file(os.path.join(folder, f"Well{well}_Point{well}_{site:04d}_ChannelDAPI_Seq0000.h5"), "a") as f:
        write_table(f, "cell_segmentation/default", table("Cells"))
        write_table(f, "nucleus_segmentation/default", table("Nuclei"))
        write_table(f, "cell_segmentation/cytoplasm", table("Cytoplasm"))


def plate_wells(n_images: int) -> list[tuple[str, int]]:
    rows, sites = "ABCDEFGHIJKLMNOP", 8
    wells = [f"{r}{c:02d}" for r in rows for c in range(1, 25)]
    return [(wells[i // sites], i % sites) for i in range(n_images)]


def second_run(n_images: int, n_cells: int, work: str, additions: int) -> tuple[float, float, dict]:
    """First run's seconds, then the median seconds (whole and per job) of ``additions`` runs after a new well."""
    folder = os.path.join(work, f"P{n_images}")
    os.makedirs(folder)
    rng = np.random.default_rng(n_images)
    placed = plate_wells(n_images + 8 * additions)
    for well, site in placed[:n_images]:
        write_container(folder, well, site, n_cells, rng)
    jobs = [AggregateTables(min_cells=1, focus_channel=None), ExportProfiles()]
    start = time.perf_counter()
    run_workflow("Plate", folder, jobs, progress=False)
    first = time.perf_counter() - start
    runs = []
    for k in range(additions):
        for well, site in placed[n_images + 8 * k : n_images + 8 * (k + 1)]:  # one more well of 8 images
            write_container(folder, well, site, n_cells, rng)
        start = time.perf_counter()
        results = run_workflow("Plate", folder, jobs, progress=False)
        runs.append((time.perf_counter() - start, {name: r.seconds for name, r in results.items()}))
    again = float(np.median([seconds for seconds, _ in runs]))
    by_job = {name: float(np.median([jobs[name] for _, jobs in runs])) for name in runs[0][1]}
    return first, again, by_job


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=100, help="cells per image")
    parser.add_argument("--additions", type=int, default=3, help="new wells, one run after each (median)")
    args = parser.parse_args()
    os.environ.setdefault("LOGLEVEL", "WARNING")
    work = tempfile.mkdtemp(prefix="batchlib-plate-jobs-")
    try:
        times = {n: second_run(n, args.cells, work, args.additions) for n in (96, 768)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for n, (first, again, by_job) in times.items():
        jobs = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in by_job.items())
        print(
            f"{n} images x {args.cells} cells: first run {first:.2f} s, "
            f"after 8 new images {again:.2f} s, median of {args.additions} ({jobs})"
        )
    ratio = times[768][1] / times[96][1]
    print(f"after 8 new images, 768 / 96 images: {ratio:.2f}x (target <= 1.5x: {'PASS' if ratio <= 1.5 else 'FAIL'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
