"""CPU of an idle watcher: N raw files present and processed, nothing new arriving.

A raw folder of N tiny files (default 100,000) is processed once by a batch
run of one trivial per-file job; then a watcher starts on it (in a
subprocess), settles and finds everything up to date, and its CPU time is
measured over an idle window, with file events and with polling every 10 s.
Targets: below 2% of a core (events) and below 10% (polling every 10 s).

Latency (``--latency``): a simulated microscope writes I images (default
24, 3 channels, 256 x 256) one every R seconds into a watched folder; the
watcher runs import, threshold segmentation, cells, measure and aggregate
(``plate_interval`` 0); for each image the time from the end of its write to
its row in the image table is measured (the table is looked at every 20 ms;
the microscope starts once the watcher watches), against ``settle`` + 2 x
the per-image processing time at that rate: the same jobs (job objects kept
alive, as in the watcher) run over the same images arriving one at a time,
median of the runs. Printed beside it, and judged too, the stricter reading:
``settle`` + 2 x the per-image time of a batch run over all the images at
once, where the plate-level job's fixed cost is shared by all of them.

Run:  python bench/watch.py [--files 100000] [--idle 30]
      python bench/watch.py --latency [--images 24] [--every 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

from batchlib import BatchJob, run_workflow

WATCHER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {bench!r})
    from watch import Touch
    from batchlib.watch import watch_workflow
    watch_workflow("Idle", {folder!r}, [Touch({raw!r})], settle=1.0, poll={poll!r}, forever=True, progress=False)
    """
)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Touch(BatchJob):
    """Writes an empty output per input: the bookkeeping is all there is."""

    def __init__(self, raw: str):
        super().__init__(input_pattern="*.txt", output_ext=".out", input_folder=raw)

    def run(self, input_files, output_files, **kwargs):
        for out in output_files:
            open(out, "w").close()


def measure(raw: str, folder: str, poll: float | None, idle: float) -> float:
    bench = os.path.dirname(os.path.abspath(__file__))
    script = WATCHER.format(bench=bench, folder=folder, raw=raw, poll=poll)
    watcher = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)
    try:
        # Settled and checked: the watch status says so once the first batch ran.
        status = os.path.join(folder, "batchlib", "watch.status")
        deadline = time.monotonic() + 600
        while not os.path.exists(status) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(5)  # past the first look, the settle time and the no-op run
        start_cpu, start = cpu_seconds(watcher.pid), time.monotonic()
        time.sleep(idle)
        used = cpu_seconds(watcher.pid) - start_cpu
        return used / (time.monotonic() - start)
    finally:
        watcher.terminate()
        watcher.wait(60)


LATENCY_WATCHER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {bench!r})
    from watch import latency_jobs
    from batchlib.watch import watch_workflow
    watch_workflow("Live", {folder!r}, latency_jobs({raw!r}), settle={settle!r}, plate_interval=0,
                   expected={expected!r}, progress=False)
    """
)


def latency_jobs(raw: str) -> list:
    """The jobs of the watch tests: import, threshold nuclei, cells, measure, aggregate."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from test_watch import jobs

    return jobs(raw)


def _tiff(seed: int, size: int) -> bytes:
    import io

    import numpy as np
    import tifffile

    from batchlib.synthetic import synthetic_site

    channels, _, _ = synthetic_site((size, size), n_nuclei=size // 8, seed=seed)
    buffer = io.BytesIO()
    stack = np.stack([channels["nuclei"], channels["cells"], channels["marker"]])
    tifffile.imwrite(buffer, stack, photometric="minisblack")
    return buffer.getvalue()


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def _rows(table: str) -> set[str]:
    from batchlib.io import open_file, read_plate_table

    try:
        with open_file(table, "r") as f:
            return set(read_plate_table(f, "images")["image_name"])
    except Exception:  # being written by the watcher just now
        return set()


def bench_latency(n_images: int, every: float, size: int, settle: float, work: str) -> None:
    names = [
        f"WellC{1 + i // 4:02d}_PointC{1 + i // 4:02d}_{i % 4:04d}_ChannelDAPI,WF_GFP,TRITC_Seq{i:04d}"
        for i in range(n_images)
    ]
    data = [_tiff(i, size) for i in range(n_images)]
    # The per-image time: a batch run of the same jobs on the same images.
    raw_batch, batch = os.path.join(work, "raw_batch"), os.path.join(work, "batch")
    os.makedirs(raw_batch)
    for name, blob in zip(names, data):
        with open(os.path.join(raw_batch, name + ".tiff"), "wb") as f:
            f.write(blob)
    start = time.perf_counter()
    run_workflow("Batch", batch, latency_jobs(raw_batch), progress=False)
    per_image_batch = (time.perf_counter() - start) / n_images
    per_image = one_at_a_time(names, data, work)
    raw, folder = os.path.join(work, "raw_live"), os.path.join(work, "live")
    os.makedirs(raw)
    bench = os.path.dirname(os.path.abspath(__file__))
    script = LATENCY_WATCHER.format(bench=bench, folder=folder, raw=raw, settle=settle, expected=n_images)
    watcher = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)
    written: dict[str, float] = {}
    seen: dict[str, float] = {}
    table = os.path.join(folder, "live_table.hdf5")
    last_change = None
    try:
        # The microscope starts once the watcher watches (its status file is there), as in a facility.
        status = os.path.join(folder, "batchlib", "watch.status")
        ready_by = time.monotonic() + 120
        while not os.path.exists(status) and time.monotonic() < ready_by:
            time.sleep(0.05)
        next_write = time.monotonic()
        while len(seen) < n_images and time.monotonic() < next_write + 120:
            if len(written) < n_images and time.monotonic() >= next_write:
                name = names[len(written)]
                with open(os.path.join(raw, name + ".tiff"), "wb") as f:
                    f.write(data[len(written)])
                written[name] = time.monotonic()
                next_write += every
            now = time.monotonic()
            change = _stamp(table)
            if change != last_change:  # read the table only when it changed
                rows = _rows(table)
                for name in rows - set(seen):
                    seen[name] = now
                last_change = change if rows else None
            time.sleep(0.02)
    finally:
        watcher.wait(120)
    latencies = sorted(seen[n] - written[n] for n in seen)
    target, strict = settle + 2 * per_image, settle + 2 * per_image_batch
    worst = latencies[-1] if latencies else float("inf")
    in_order = [round(seen[n] - written[n], 2) for n in names if n in seen]
    print(f"latencies in the order written (s): {in_order}")
    print(
        f"latency, {n_images} images of {size}x{size} every {every:g} s, settle {settle:g} s: "
        f"median {latencies[len(latencies) // 2]:.2f} s, worst {worst:.2f} s; per-image time one at a time "
        f"{per_image:.3f} s; target settle + 2 x that = {target:.2f} s: {'PASS' if worst <= target else 'FAIL'}"
    )
    print(
        f"stricter: per-image time of a batch run {per_image_batch:.3f} s; settle + 2 x that = {strict:.2f} s: "
        f"{'PASS' if worst <= strict else 'FAIL'}"
    )


def one_at_a_time(names: list[str], data: list[bytes], work: str) -> float:
    """Median seconds of a workflow run over one new image, images added one by one (as a watcher runs)."""
    import statistics

    raw, folder = os.path.join(work, "raw_single"), os.path.join(work, "single")
    os.makedirs(raw)
    jobs = latency_jobs(raw)
    for job in jobs:
        job.warm_up()
    runs = []
    for name, blob in zip(names, data):
        with open(os.path.join(raw, name + ".tiff"), "wb") as f:
            f.write(blob)
        start = time.perf_counter()
        run_workflow("Single", folder, jobs, progress=False, ignore_invalid_inputs=True, ignore_failed_outputs=True)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle watching measured")
    parser.add_argument("--latency", action="store_true", help="measure the latency instead of the idle CPU")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between two images of the microscope")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--settle", type=float, default=1.0)
    args = parser.parse_args()
    if args.latency:
        work = tempfile.mkdtemp(prefix="batchlib-watch-bench-")
        try:
            bench_latency(args.images, args.every, args.size, args.settle, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return 0

    work = tempfile.mkdtemp(prefix="batchlib-watch-bench-")
    try:
        raw, folder = os.path.join(work, "raw"), os.path.join(work, "plate")
        os.makedirs(raw)
        for i in range(args.files):
            with open(os.path.join(raw, f"f{i:07d}.txt"), "w") as f:
                f.write("x")
        start = time.perf_counter()
        run_workflow("Idle", folder, [Touch(raw)], progress=False)
        print(f"{args.files} files processed by a batch run in {time.perf_counter() - start:.1f} s")
        for poll, target in ((None, 0.02), (10.0, 0.10)):
            share = measure(raw, folder, poll, args.idle)
            mode = "file events" if poll is None else f"polling every {poll:g} s"
            verdict = "PASS" if share < target else "FAIL"
            print(
                f"idle watcher, {mode}: {share:.2%} of a core over {args.idle:g} s (target < {target:.0%}: {verdict})"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
