"""Per-well aggregation of 1M cells x 100 features: ours against pycytominer.aggregate.

Both start from the same single-cell Parquet file and compute the median of
every feature per (plate, well), whole process included (loading too); each
runs in a fresh subprocess so that its peak memory (max RSS) is its own. Also
times the incremental case: one new image (1/96 of a well's cells) added to
the plate, and the well table computed again.

Run:  python bench/aggregate.py [--cells 1000000] [--features 100]
Target: at least 5x faster and at most half the peak memory of pycytominer.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd

# Peak memory: VmHWM, the high-water mark of this process image (ru_maxrss would include
# the parent's memory at fork time).
PEAK = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"
OURS = """
import sys, time
start = time.perf_counter()
import pyarrow.parquet as pq
from batchlib.profiles import well_median_table
result = well_median_table(sys.argv[1])
pq.write_table(result, sys.argv[2])
print(time.perf_counter() - start, PEAK)
"""
THEIRS = """
import sys, time
start = time.perf_counter()
import pandas as pd
from pycytominer import aggregate
cells = pd.read_parquet(sys.argv[1])
result = aggregate(cells, strata=["Metadata_Plate", "Metadata_Well"], features="infer", operation="median")
result.to_parquet(sys.argv[2])
print(time.perf_counter() - start, PEAK)
"""


def make_cells(n: int, n_features: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    wells = np.array([f"{r}{c:02d}" for r in "ABCDEFGH" for c in range(1, 13)])
    data = {
        "Metadata_Plate": "plate_001",
        "Metadata_Well": wells[rng.integers(0, 96, n)],
        "Metadata_Site": rng.integers(0, 9, n),
        "Metadata_ObjectNumber": np.arange(n),
    }
    compartments = ("Nuclei", "Cells", "Cytoplasm")
    for i in range(n_features):
        data[f"{compartments[i % 3]}_Intensity_Feature{i}_GFP"] = rng.normal(size=n)
    return pd.DataFrame(data)


def run(script: str, source: str, target: str) -> tuple[float, float]:
    script = script.replace("PEAK", PEAK)
    out = subprocess.run([sys.executable, "-c", script, source, target], capture_output=True, text=True, check=True)
    seconds, max_rss_kb = out.stdout.split()[-2:]
    return float(seconds), float(max_rss_kb) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="batchlib-bench-aggregate-") as work:  # ~0.8 GB of Parquet
        return bench(work, args.cells, args.features)


def bench(work: str, cells: int, features_per_object: int) -> int:
    source = os.path.join(work, "single_cell.parquet")
    make_cells(cells, features_per_object).to_parquet(source, index=False)
    ours, theirs = os.path.join(work, "ours.parquet"), os.path.join(work, "theirs.parquet")
    t_ours, m_ours = run(OURS, source, ours)
    t_theirs, m_theirs = run(THEIRS, source, theirs)
    a, b = pd.read_parquet(ours), pd.read_parquet(theirs)
    features = [c for c in b.columns if c.startswith(("Nuclei_", "Cells_", "Cytoplasm_"))]
    assert np.allclose(a[features].to_numpy(), b[features].to_numpy(), rtol=1e-12), "results differ"
    print(
        f"{cells} cells x {features_per_object} features: pycytominer {t_theirs:.2f} s, {m_theirs:.2f} GiB peak; "
        f"ours {t_ours:.2f} s, {m_ours:.2f} GiB peak: {t_theirs / t_ours:.1f}x faster, "
        f"{m_ours / m_theirs:.2f}x the memory (target >= 5x, <= 0.5x); same medians"
    )
    # Incremental: one more image's cells, then the well table again.
    extra = make_cells(cells // 96 // 9, features_per_object, seed=1)
    pd.concat([pd.read_parquet(source), extra]).to_parquet(source, index=False)
    t_inc, _ = run(OURS, source, ours)
    print(f"one image added ({len(extra)} cells): well table again in {t_inc:.2f} s (a full pass)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
