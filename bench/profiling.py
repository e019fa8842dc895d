"""Normalize + feature selection of a plate's single cells: batchlib against pycytominer, time and peak memory.

A single-cell Parquet file of N cells x F features (default the issue's
1,000,000 x 500; metadata: plate, well, site, control type; a few constant,
mostly-missing and correlated features among random ones) is written once.
Then, each in a fresh process (its peak resident memory read from the
kernel when it ends), on the same file:

- batchlib: ``normalize_parquet`` (standardize over all cells, streamed to a
  new Parquet file), then ``select_features_parquet`` (variance,
  correlation, missing values; streamed too) on the normalized cells;
- pycytominer: ``normalize`` (the same settings) on the table read with
  pandas, written to Parquet (the step's output, as batchlib writes it),
  then ``feature_select`` with the same operations.

Both runs' dropped features are compared (they must be identical). Targets
(profiles issue): batchlib at least 5x faster and at most half the peak memory.

``--batch``: a batch of 10 small plates (those of ``tests/test_batch.py``)
through ``run_profiling_batch``, then an 11th plate added and the batch run
again: which plates are normalized again, and the time of each run.

Run:  python bench/profiling.py [--cells 1000000] [--features 500]
      python bench/profiling.py --batch
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

OPERATIONS = ["variance_threshold", "correlation_threshold", "drop_na_columns"]

OURS = """
import json, sys, time
from batchlib.normalize import normalize_parquet
from batchlib.feature_select import select_features_parquet
source, target = sys.argv[1], sys.argv[2]
start = time.perf_counter()
normalize_parquet(source, target)
normalized = time.perf_counter()
dropped = select_features_parquet(target, {operations})
print(json.dumps({{"normalize": normalized - start, "select": time.perf_counter() - normalized, "dropped": dropped}}))
"""

THEIRS = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
import pandas as pd
from pycytominer import feature_select, normalize
source, target = sys.argv[1], sys.argv[2]
start = time.perf_counter()
cells = pd.read_parquet(source)
normalized_cells = normalize(cells, features="infer", meta_features="infer", samples="all", method="standardize")
normalized_cells.to_parquet(target, index=False)  # the step's output, as batchlib writes it
normalized = time.perf_counter()
selected = feature_select(normalized_cells, operation={operations})
dropped = [c for c in normalized_cells.columns if c not in selected.columns]
print(json.dumps({{"normalize": normalized - start, "select": time.perf_counter() - normalized, "dropped": dropped}}))
"""


def write_cells(path: str, n_cells: int, n_features: int, rows_per_group: int = 100_000) -> None:
    """A single-cell table written a row group at a time (the bench itself stays small in memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    names = [f"Cells_Feature_{k}" for k in range(n_features)]
    mixing = rng.normal(0, 1, n_features)
    writer = None
    for start in range(0, n_cells, rows_per_group):
        n = min(rows_per_group, n_cells - start)
        values = rng.normal(0, 1, (n, n_features))
        values[:, 1] = 3.0  # constant
        values[:, 2] = 2 * values[:, 3] + rng.normal(0, 0.1, n)  # correlated with feature 3
        values[rng.random(n) < 0.2, 4] = np.nan  # mostly... 20% missing
        values[:, 5:10] += values[:, [0]] * mixing[5:10]  # a few correlated with feature 0
        columns = {
            "Metadata_Plate": pa.array(["P1"] * n),
            "Metadata_Well": pa.array([f"A{(start + i) // 2000 % 24 + 1:02d}" for i in range(n)]),
            "Metadata_Site": pa.array(np.arange(start, start + n) % 9),
        }
        columns.update({name: pa.array(values[:, k]) for k, name in enumerate(names)})
        table = pa.table(columns)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, use_dictionary=["Metadata_Plate", "Metadata_Well"])
        writer.write_table(table)
    writer.close()


def measure(script: str, *args: str) -> tuple[dict, float, float]:
    """Run ``script`` in a fresh interpreter; its JSON output, wall seconds and peak resident memory (GB)."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    out, err = process.stdout.read().decode(), process.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the measured run failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), seconds, usage.ru_maxrss / 1024**2  # ru_maxrss: kB on Linux


def bench_batch(work: str) -> None:
    """Ten plates, then an eleventh: the per-plate work redone, and the time of each batch run."""
    import pathlib

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from test_batch import PLATEMAP, make_plate

    from batchlib.batch import BatchOptions, run_profiling_batch

    os.environ.setdefault("LOGLEVEL", "WARNING")
    root = pathlib.Path(work)
    platemap = root / "platemap.txt"
    platemap.write_text(PLATEMAP)
    batch = root / "Batch"
    for i in range(10):
        make_plate(batch, f"P{i:02d}", i, platemap)
    options = BatchOptions(consensus_by=("Metadata_broad_sample",))
    for label in ("10 plates, first run", "an 11th plate added"):
        if label.startswith("an"):
            make_plate(batch, "P10", 10, platemap)
        start = time.perf_counter()
        status = run_profiling_batch(batch, options)
        seconds = time.perf_counter() - start
        normalized = sorted(p for p, r in status["plates"].items() if r["processed"])
        steps = status["batch_steps"]
        print(
            f"{label}: {seconds:.1f} s; plates normalized: {', '.join(normalized) or 'none'} "
            f"({len(normalized)} of {len(status['plates'])}); batch steps: {steps['action']} ({steps['why']})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=500)
    parser.add_argument("--batch", action="store_true", help="measure a batch of plates growing by one instead")
    args = parser.parse_args()
    if args.batch:
        work = tempfile.mkdtemp(prefix="batchlib-batch-bench-")
        try:
            bench_batch(work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return 0
    work = tempfile.mkdtemp(prefix="batchlib-profiling-bench-")
    try:
        source = os.path.join(work, "cells.parquet")
        start = time.perf_counter()
        write_cells(source, args.cells, args.features)
        size = os.path.getsize(source) / 1024**3
        made = time.perf_counter() - start
        print(f"{args.cells} cells x {args.features} features: {size:.2f} GB of Parquet, made in {made:.0f} s")
        ours, ours_s, ours_gb = measure(OURS.format(operations=OPERATIONS), source, os.path.join(work, "out.parquet"))
        theirs, theirs_s, theirs_gb = measure(
            THEIRS.format(operations=OPERATIONS), source, os.path.join(work, "theirs.parquet")
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    runs = (("batchlib", ours, ours_s, ours_gb), ("pycytominer", theirs, theirs_s, theirs_gb))
    for name, result, seconds, gb in runs:
        print(
            f"{name:<12} {seconds:7.1f} s in all (normalize {result['normalize']:.1f} s, feature selection "
            f"{result['select']:.1f} s), peak memory {gb:.2f} GB, {len(result['dropped'])} features dropped"
        )
    same = sorted(ours["dropped"]) == sorted(theirs["dropped"])
    speed, memory = theirs_s / ours_s, ours_gb / theirs_gb
    print(f"same features dropped: {same}")
    print(f"speed: {speed:.1f}x pycytominer's (target >= 5x: {'PASS' if speed >= 5 else 'FAIL'})")
    print(f"peak memory: {memory:.2f} of pycytominer's (target <= 0.5: {'PASS' if memory <= 0.5 else 'FAIL'})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
