"""I/O throughput of the data model, to choose chunking and compression.

Writes a 3-channel 2048x2048 uint16 image (synthetic nuclei, cells, marker)
with its pyramid through ``write_image``, on each backend and codec, then
reads level s0 back; and writes/reads a 1M-row x 50-column table. Throughput
is megabytes of s0 per second (24 MiB for the three channels). The baseline,
measured in the same run, is plain h5py (``create_dataset`` with gzip level
6 + shuffle, single-threaded) writing the same pyramid.

Each image write is timed ``--repeat`` times and the best is reported: on a
small shared machine single runs vary by up to 2x (page-cache writeback).

Run:  python bench/io.py [--repeat 7] [--table-rows 1000000] [--skip-table] [--skip-images]
Target: viewer-readable HDF5 multiscale write >= 150 MiB/s; Zarr/N5 faster.
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

from batchlib.io import containers, open_file, read_table, write_image, write_table
from batchlib.io.images import block_mean, default_scale_factors
from batchlib.synthetic import synthetic_site

MIB = 2**20


def make_image() -> np.ndarray:
    channels, _, _ = synthetic_site((2048, 2048), n_nuclei=2000, seed=0)
    return np.stack([channels["nuclei"], channels["cells"], channels["marker"]])


def baseline_h5py(path: str, image: np.ndarray, level: int) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        for c, channel in enumerate(image):
            data = channel
            for i in range(len(default_scale_factors(channel.shape))):
                if i:
                    data = block_mean(data, 2)
                f.create_dataset(
                    f"c{c}/s{i}",
                    data=data,
                    chunks=(min(512, data.shape[0]), min(512, data.shape[1])),
                    compression="gzip",
                    compression_opts=level,
                    shuffle=True,
                )


def timed(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        # Flush what earlier candidates left in the page cache, so that no
        # candidate pays for another's write-back (later rows used to be slower).
        os.sync()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def size_of(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def bench_images(work: str, repeat: int, only: str | None = None) -> None:
    image = make_image()
    mib = image.nbytes / MIB
    print(f"image: 3 x 2048 x 2048 uint16 = {mib:.0f} MiB at s0, pyramid {default_scale_factors((2048, 2048))}")
    base_path = os.path.join(work, "baseline.h5")
    baseline = {lvl: timed(lambda lvl=lvl: baseline_h5py(base_path, image, lvl), repeat) for lvl in (6, 1)}
    print(
        f"{'backend / codec / chunk':42} {'write MiB/s':>11} {'vs h5py gzip6':>13} {'read MiB/s':>10} {'size MiB':>8}"
    )
    for lvl, seconds in baseline.items():
        print(
            f"{f'h5py gzip-{lvl}+shuffle serial (baseline)':42} {mib / seconds:>11.0f} {baseline[6] / seconds:>12.2f}x"
        )
    candidates = [
        (".h5", None, None, 512, {}),
        (".h5", "gzip", 1, 256, {}),
        (".h5", "gzip", 1, 512, {}),
        (".h5", "gzip", 1, 1024, {}),
        (".h5", "gzip", 6, 512, {}),
        (".n5", None, None, 512, {}),
        (".n5", "gzip", 1, 512, {}),
        (".n5", "gzip", 1, 1024, {}),
        (".n5", "lz4", None, 512, {}),
        (".n5", "zstd", None, 512, {}),
        (".n5", "blosc", 5, 512, {}),
        (".n5", "blosc", 5, 1024, {}),
        (".zarr", None, None, 512, {"zarr_format": 2}),
        (".zarr", "zstd", 1, 512, {"zarr_format": 2}),
        (".zarr", "gzip", 1, 512, {"zarr_format": 2}),
        (".zarr", "blosc", 5, 512, {"zarr_format": 2}),
        (".zarr", "blosc", 5, 1024, {"zarr_format": 2}),
        (".zarr", "zstd", 1, 512, {"zarr_format": 3}),
        (".zarr", "blosc", 5, 512, {"zarr_format": 3}),
        (".zarr", "blosc", 5, 1024, {"zarr_format": 3}),
    ]
    if only:
        candidates = [c for c in candidates if c[:4] == (".h5", "gzip", 1, 512) or only in repr(c)]
    for ext, codec, level, chunk, kwargs in candidates:
        path = os.path.join(work, "bench" + ext)

        def write(path=path, codec=codec, level=level, chunk=chunk, kwargs=kwargs):
            remove(path)
            with open_file(path, "w", **kwargs) as f:
                for c, channel in enumerate(image):
                    _write_image_with(f, f"c{c}", channel, chunk, codec, level)

        seconds = timed(write, repeat)

        def read(path=path):
            with open_file(path, "r") as f:
                for c in range(3):
                    f[f"c{c}/s0"][...]

        read_seconds = timed(read, repeat)
        fmt = f" v{kwargs['zarr_format']}" if kwargs else ""
        label = f"{ext[1:]}{fmt} {codec or 'none'}{'-' + str(level) if level else ''} {chunk}"
        if (codec, level) == containers.DEFAULT_COMPRESSION[ext[1:]] and chunk == 512:
            label += " (default)"
        print(
            f"{label:42} {mib / seconds:>11.0f} {baseline[6] / seconds:>12.2f}x {mib / read_seconds:>10.0f} "
            f"{size_of(path) / MIB:>8.1f}"
        )
        remove(path)


def _write_image_with(f, name, channel, chunk, codec, level):
    # write_image with an explicit codec level: the datasets are created by
    # write_image; only the level differs from the backend default.
    backend = f.backend.name
    saved = containers.DEFAULT_COMPRESSION[backend]
    containers.DEFAULT_COMPRESSION[backend] = (codec, level)
    try:
        write_image(f, name, channel, chunks=(chunk, chunk), compression="default")
    finally:
        containers.DEFAULT_COMPRESSION[backend] = saved


def make_table(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    data = {"label_id": np.arange(1, rows + 1, dtype=np.int64)}
    for i in range(40):
        data[f"Cells_Feature_{i}"] = rng.normal(size=rows)
    for i in range(5):
        data[f"int_{i}"] = rng.integers(0, 10**6, rows)
    for i in range(2):
        data[f"flag_{i}"] = rng.random(rows) > 0.5
    wells = np.array([f"{r}{c:02d}" for r in "ABCDEFGH" for c in range(1, 13)])
    data["well"] = wells[rng.integers(0, len(wells), rows)]
    data["plate"] = "plate_001"
    return pd.DataFrame(data)


def bench_table(work: str, rows: int) -> None:
    table = make_table(rows)
    print(
        f"table: {rows} rows x {table.shape[1]} columns ({table.memory_usage(deep=True).sum() / MIB:.0f} MiB in pandas)"
    )
    for ext, kwargs in ((".h5", {}), (".n5", {}), (".zarr", {"zarr_format": 2})):
        path = os.path.join(work, "table" + ext)
        remove(path)
        start = time.perf_counter()
        with open_file(path, "w", **kwargs) as f:
            write_table(f, "cells", table)
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        with open_file(path, "r") as f:
            back = read_table(f, "cells")
        read_s = time.perf_counter() - start
        assert back.equals(table)
        print(f"  {ext[1:]:5} write {write_s:6.1f} s, read {read_s:6.1f} s, {size_of(path) / MIB:7.0f} MiB on disk")
        remove(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--table-rows", type=int, default=1_000_000)
    parser.add_argument("--skip-table", action="store_true")
    parser.add_argument("--skip-images", action="store_true")
    parser.add_argument("--only", help="only candidates containing this (e.g. blosc), and the h5 default")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="batchlib-bench-io-")
    try:
        if not args.skip_images:
            bench_images(work, args.repeat, args.only)
        if not args.skip_table:
            bench_table(work, args.table_rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
