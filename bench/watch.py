"""CPU of an idle watcher: N raw files present and processed, nothing new arriving.

A raw folder of N tiny files (default 100,000) is processed once by a batch
run of one trivial per-file job; then a watcher starts on it (in a
subprocess), settles and finds everything up to date, and its CPU time is
measured over an idle window, with file events and with polling every 10 s.
Targets: below 2% of a core (events) and below 10% (polling every 10 s).

Run:  python bench/watch.py [--files 100000] [--idle 30]

Not measured here yet: the latency from a file settling to its row in the
image table under a simulated microscope (the issue's second benchmark).
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle watching measured")
    args = parser.parse_args()

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
