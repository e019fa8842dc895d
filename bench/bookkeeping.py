"""Bookkeeping cost of batchlib against the floor and against Snakemake.

For each size N (default 10,000 and 100,000 small input files) this measures,
in one run on the same files:

(a) the first run of one trivial per-file job (copy a few bytes), serial:
    bookkeeping overhead per file = (wall time - time spent inside run()) / N;
(b) the no-op rerun of a workflow of 6 chained jobs (.txt -> .o1 -> ... -> .o6);
(c) ``snakemake -n`` (dry run) of the same 6 chained rules on the same files;
(d) the floor: one listing of the folder plus one stat per file on disk.

Run:  python bench/bookkeeping.py [--sizes 10000 100000] [--work DIR]
Targets: (b) within 2x of (d) and at least 50x faster than (c); (a) under
0.5 ms per file; costs linear in N.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from batchlib import BatchJob, run_workflow

N_CHAIN = 6


class Step(BatchJob):
    """Copies a tiny file; measures its own time inside run()."""

    def __init__(self, step: int):
        src = ".txt" if step == 1 else f".o{step - 1}"
        super().__init__(input_pattern=f"*{src}", output_ext=f".o{step}", identifier=str(step))
        self._own = 0.0

    def run(self, input_files, output_files, **kwargs):
        start = time.perf_counter()
        for inp, out in zip(input_files, output_files):
            with open(inp, "rb") as f:
                data = f.read()
            with open(out, "wb") as f:
                f.write(data)
        self._own += time.perf_counter() - start


def make_inputs(folder: str, n: int) -> None:
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        with open(os.path.join(folder, f"img{i:07d}.txt"), "w") as f:
            f.write("x")


def floor(folder: str) -> float:
    start = time.perf_counter()
    with os.scandir(folder) as entries:
        for entry in entries:
            os.stat(entry.path)
    return time.perf_counter() - start


SNAKEFILE = """
SAMPLES = glob_wildcards("{{s}}.txt").s
rule all:
    input: expand("{{s}}.o{last}", s=SAMPLES)
{rules}
"""


def snakemake_dry_run(folder: str) -> float:
    rules = "\n".join(
        f"rule r{k}:\n    input: '{{s}}.{'txt' if k == 1 else f'o{k - 1}'}'\n    output: '{{s}}.o{k}'\n"
        f"    shell: 'cp {{input}} {{output}}'\n"
        for k in range(1, N_CHAIN + 1)
    )
    with open(os.path.join(folder, "Snakefile"), "w") as f:
        f.write(SNAKEFILE.format(last=N_CHAIN, rules=rules))
    start = time.perf_counter()
    result = subprocess.run(["snakemake", "-n", "-c1", "--quiet"], cwd=folder, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"snakemake failed:\n{result.stderr[-2000:]}")
    if "Nothing to be done" not in result.stdout + result.stderr and "jobs" in result.stdout:
        print("  warning: snakemake dry run found work to do:", result.stdout[-300:])
    return elapsed


def bench(n: int, work: str) -> dict:
    folder = os.path.join(work, f"plate_{n}")
    shutil.rmtree(folder, ignore_errors=True)
    make_inputs(folder, n)
    os.environ.setdefault("LOGLEVEL", "WARNING")

    # (a) first run of one job, serial
    first = Step(1)
    start = time.perf_counter()
    run_workflow("bench", folder, [first], progress=False)
    wall = time.perf_counter() - start
    overhead_ms = (wall - first._own) / n * 1e3

    # build the rest of the chain, then the no-op rerun of all 6 jobs
    chain = [Step(k) for k in range(1, N_CHAIN + 1)]
    run_workflow("bench", folder, chain, progress=False)
    os.sync()
    # Interleaved, best of 5 each: a busy moment of the machine hits both alike.
    noops, floors = [], []
    for _ in range(5):
        start = time.perf_counter()
        results = run_workflow("bench", folder, [Step(k) for k in range(1, N_CHAIN + 1)], progress=False)
        noops.append(time.perf_counter() - start)
        assert all(r.processed == 0 for r in results.values())
        floors.append(floor(folder))
    noop, fl = min(noops), min(floors)
    snake = snakemake_dry_run(folder) if shutil.which("snakemake") else float("nan")
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "n": n,
        "files": n * (N_CHAIN + 1),
        "first_wall": wall,
        "first_own": first._own,
        "overhead_ms": overhead_ms,
        "noop": noop,
        "floor": fl,
        "snakemake": snake,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary folder)")
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="batchlib-bench-")
    rows = []
    for n in args.sizes:
        print(f"N = {n} inputs ...", flush=True)
        row = bench(n, work)
        rows.append(row)
        print(
            f"  (a) first run, 1 job: {row['first_wall']:.2f} s wall, {row['first_own']:.2f} s inside run(); "
            f"bookkeeping {row['overhead_ms']:.3f} ms/file (target < 0.5)"
        )
        print(f"  (d) floor, listdir + stat of {row['files']} files: {row['floor']:.3f} s")
        print(
            f"  (b) no-op rerun, {N_CHAIN} jobs: {row['noop']:.3f} s = {row['noop'] / row['floor']:.2f}x floor "
            f"(target <= 2x)"
        )
        print(
            f"  (c) snakemake -n, {N_CHAIN} rules: {row['snakemake']:.2f} s; batchlib no-op is "
            f"{row['snakemake'] / row['noop']:.0f}x faster (target >= 50x)"
        )
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        scale = b["n"] / a["n"]
        print(
            f"linearity, {a['n']} -> {b['n']} inputs ({scale:.0f}x): no-op {b['noop'] / a['noop']:.1f}x, "
            f"first-run overhead per file {b['overhead_ms'] / a['overhead_ms']:.2f}x"
        )
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
