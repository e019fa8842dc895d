"""Upload throughput and no-op rerun time: batchlib vs ``aws s3 sync``, against a local SeaweedFS.

A plate of many small files and a few large ones is uploaded by both tools,
each into its own fresh bucket of the same local SeaweedFS server (started
here on 127.0.0.1, telemetry off), alternating which goes first, best of
``--repeat``; then each tool's no-op rerun (nothing changed) is timed, best
of 5. Ours is timed both in process (``upload_plate``, what a workflow step
costs) and as the ``batchlib upload`` command (a new Python process, like
``aws``).

Run:  python bench/upload.py [--small 1996] [--large 4] [--repeat 3] [--aws PATH]
awscli pins botocore exactly, so install it in a venv of its own:
      python -m venv /tmp/awscli-venv && /tmp/awscli-venv/bin/pip install awscli
Target: first upload within 1.2x of aws s3 sync; no-op rerun at least 10x faster.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
os.environ.setdefault("LOGLEVEL", "WARNING")

from seaweed import ACCESS_KEY, SECRET_KEY, SeaweedServer

from batchlib.s3 import upload_plate

MIB = 2**20


def make_plate(root: str, n_small: int, n_large: int, seed: int = 0) -> tuple[str, int]:
    """Crops-like small files (20-200 KB) in per-image folders, and a few 24 MiB containers."""
    rng = random.Random(seed)
    plate = os.path.join(root, "BenchPlate")
    total = 0
    for i in range(n_small):
        folder = os.path.join(plate, f"WellC{1 + i % 12:02d}_PointC01_{i // 100:04d}_Seq{i // 100:04d}.crops")
        os.makedirs(folder, exist_ok=True)
        data = rng.randbytes(rng.randint(20_000, 200_000))
        with open(os.path.join(folder, f"{i}_mask.png"), "wb") as f:
            f.write(data)
        total += len(data)
    for i in range(n_large):
        data = rng.randbytes(24 * MIB)
        with open(os.path.join(plate, f"WellC{1 + i:02d}_PointC01_0000_Seq{i:04d}.h5"), "wb") as f:
            f.write(data)
        total += len(data)
    return plate, total


def aws_sync(aws: str, plate: str, url: str, endpoint: str) -> float:
    env = dict(
        os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION="us-east-1"
    )
    start = time.perf_counter()
    subprocess.run(
        [aws, "s3", "sync", plate, url, "--endpoint-url", endpoint, "--only-show-errors", "--exclude", "batchlib/*"],
        env=env,
        check=True,
    )
    return time.perf_counter() - start


def ours_in_process(plate: str, url: str, endpoint: str) -> float:
    start = time.perf_counter()
    report = upload_plate(plate, url, endpoint, progress=False)
    elapsed = time.perf_counter() - start
    assert report.ok, report.summary()
    return elapsed


def ours_command(plate: str, url: str, endpoint: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "batchlib.cli", "upload", plate, url, "--endpoint-url", endpoint],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1996, help="small files (20-200 KB)")
    parser.add_argument("--large", type=int, default=4, help="large files (24 MiB, multipart)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--aws", default=shutil.which("aws") or "/tmp/awscli-venv/bin/aws")
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    work = tempfile.mkdtemp(prefix="batchlib-bench-upload-")
    server = SeaweedServer(os.path.join(work, "seaweedfs")).start()
    try:
        client, endpoint = server.client(), server.endpoint_url
        plate, total = make_plate(work, args.small, args.large)
        n_files = args.small + args.large
        print(f"plate: {n_files} files, {total / MIB:.0f} MiB; SeaweedFS on {endpoint}")
        first = {"aws": [], "ours": []}
        for round_ in range(args.repeat):
            order = ["aws", "ours"] if round_ % 2 == 0 else ["ours", "aws"]
            for tool in order:
                bucket = f"{tool}-{round_}"
                client.create_bucket(Bucket=bucket)
                shutil.rmtree(os.path.join(plate, "batchlib"), ignore_errors=True)
                if tool == "aws":
                    first[tool].append(aws_sync(args.aws, plate, f"s3://{bucket}/r/BenchPlate", endpoint))
                else:
                    first[tool].append(ours_in_process(plate, f"s3://{bucket}/r", endpoint))
        last = args.repeat - 1
        aws_noop = min(aws_sync(args.aws, plate, f"s3://aws-{last}/r/BenchPlate", endpoint) for _ in range(5))
        ours_noop = min(ours_in_process(plate, f"s3://ours-{last}/r", endpoint) for _ in range(5))
        ours_noop_cmd = min(ours_command(plate, f"s3://ours-{last}/r", endpoint) for _ in range(5))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    aws_first, ours_first = min(first["aws"]), min(first["ours"])
    print(f"first upload, best of {args.repeat} (all runs: aws {fmt(first['aws'])}, ours {fmt(first['ours'])})")
    print(f"  aws s3 sync          {aws_first:7.2f} s  {total / MIB / aws_first:6.1f} MiB/s")
    print(f"  batchlib             {ours_first:7.2f} s  {total / MIB / ours_first:6.1f} MiB/s   "
          f"{ours_first / aws_first:.2f}x aws's time (target <= 1.2x)")  # fmt: skip
    print("no-op rerun, best of 5")
    print(f"  aws s3 sync          {aws_noop:7.3f} s")
    print(f"  batchlib, in process {ours_noop:7.3f} s   {aws_noop / ours_noop:6.1f}x faster (target >= 10x)")
    print(f"  batchlib upload cmd  {ours_noop_cmd:7.3f} s   {aws_noop / ours_noop_cmd:6.1f}x faster")
    return 0


def fmt(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


if __name__ == "__main__":
    sys.exit(main())
