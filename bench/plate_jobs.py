"""Cost of the plate-level table jobs after a few new images, on a small and on a large plate.

A plate of N containers (96 and 768) holding only the cell tables MeasureObjects
writes (C cells each, random features) is aggregated and exported once by job
objects that then stay alive, as in a watcher; then 8 images (one well) are
added and the same job objects run again. The time of that second run is
compared between the plates: the median of ADDITIONS such additions, one
well after another, the two plates taking turns (a single run varies by a
third on a shared 2-core VM, and the load drifts over a minute).
Target (watch-mode issue): the large plate's at most 1.5x the small one's.

Run:  python bench/plate_jobs.py [--cells 100] [--additions 5]
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


class Plate:
    """A plate of ``n_images`` containers, aggregated and exported once by job objects kept for the next runs."""

    def __init__(self, n_images: int, n_cells: int, work: str, additions: int):
        self.folder = os.path.join(work, f"P{n_images}")
        os.makedirs(self.folder)
        self.n_images, self.n_cells = n_images, n_cells
        self.rng = np.random.default_rng(n_images)
        self.placed = plate_wells(n_images + 8 * additions)
        for well, site in self.placed[:n_images]:
            write_container(self.folder, well, site, n_cells, self.rng)
        self.jobs = [AggregateTables(min_cells=1, focus_channel=None), ExportProfiles()]
        start = time.perf_counter()
        run_workflow("Plate", self.folder, self.jobs, progress=False)
        self.first = time.perf_counter() - start
        self.runs: list[tuple[float, dict]] = []

    def add_well(self) -> None:
        """Write one more well (8 images), run the same job objects again and keep the seconds."""
        k = len(self.runs)
        for well, site in self.placed[self.n_images + 8 * k : self.n_images + 8 * (k + 1)]:
            write_container(self.folder, well, site, self.n_cells, self.rng)
        start = time.perf_counter()
        results = run_workflow("Plate", self.folder, self.jobs, progress=False)
        self.runs.append((time.perf_counter() - start, {name: r.seconds for name, r in results.items()}))

    def median(self) -> tuple[float, dict]:
        """The median seconds of the runs after a new well, whole and per job."""
        by_job = {name: float(np.median([jobs[name] for _, jobs in self.runs])) for name in self.runs[0][1]}
        return float(np.median([seconds for seconds, _ in self.runs])), by_job


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=100, help="cells per image")
    parser.add_argument("--additions", type=int, default=5, help="new wells, one run after each (median)")
    args = parser.parse_args()
    os.environ.setdefault("LOGLEVEL", "WARNING")
    work = tempfile.mkdtemp(prefix="batchlib-plate-jobs-")
    try:
        plates = [Plate(n, args.cells, work, args.additions) for n in (96, 768)]
        for _ in range(args.additions):  # interleaved: both plates see the same load of the machine
            for plate in plates:
                plate.add_well()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for plate in plates:
        again, by_job = plate.median()
        jobs = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in by_job.items())
        print(
            f"{plate.n_images} images x {args.cells} cells: first run {plate.first:.2f} s, "
            f"after 8 new images {again:.2f} s, median of {args.additions} ({jobs})"
        )
    ratio = plates[1].median()[0] / plates[0].median()[0]
    print(f"after 8 new images, 768 / 96 images: {ratio:.2f}x (target <= 1.5x: {'PASS' if ratio <= 1.5 else 'FAIL'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
