"""Where a plate's single-cell crops should live: PNG files, a crop file per image, the container, one Zarr.

The demo plate (``--wells`` x ``--sites`` images of 512 x 512, 3 channels)
is imported and segmented (threshold nuclei, watershed cells: the crops do not
care how), then its crops (64 x 64, 3 channels and a mask) are written in
each candidate layout:

- ``png``: ``CropCells(format="png")``, a PNG per cell and channel plus the mask (the former default);
- ``store``, ``store-gzip``: ``CropCells`` + ``IndexCrops``, one ``<image>.crops.hdf5`` per image and the
  plate's Parquet index (uncompressed, or deflated);
- ``container``: the same arrays as datasets inside each image's own HDF5 container (written by this script);
- ``plate-zarr``: one Zarr (v3) array per plate, cells appended image by image, 64 cells per chunk,
  uncompressed (written by this script).

For each it prints: seconds to write every image's crops, files and MB per plate, seconds to read every
cell once in random batches of 256 (a training epoch), seconds to redo one image whose cells changed, and
the seconds ``upload_plate`` takes to put them on a local SeaweedFS (127.0.0.1, telemetry off).

Run:  python bench/crop_store.py [--wells 24] [--sites 8] [--no-upload]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
os.environ.setdefault("LOGLEVEL", "WARNING")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "workflows", "cell_analysis_workflow.py")
CHANNELS = ["nuclei", "cells", "marker"]
SIZE, BATCH = 64, 256


def image_crops(container: str):
    """One image's cells, windows, intensities and masks, as the crop job computes them."""
    from batchlib.crops import cell_masks, cell_windows, cut_windows
    from batchlib.io import open_file, read_image

    with open_file(container, "r") as f:
        cells = read_image(f, "cell_segmentation")
        images = [read_image(f, c) for c in CHANNELS]
    windows = cell_windows(cells, SIZE)
    intensities = np.stack([cut_windows(image, windows.corners, SIZE) for image in images], 1)
    return windows, intensities, cell_masks(cells, windows)


def write_in_containers(containers: list[str]) -> None:
    import h5py

    for path in containers:
        windows, intensities, masks = image_crops(path)
        with h5py.File(path, "a") as f:
            if "crops" in f:
                del f["crops"]
            group = f.create_group("crops")
            chunks = {"chunks": (1, *intensities.shape[1:])} if len(masks) else {}
            group.create_dataset("intensities", data=intensities, **chunks)
            group.create_dataset("masks", data=masks, **({"chunks": (1, SIZE, SIZE)} if len(masks) else {}))
            group.create_dataset("cells", data=windows.table().to_records(index=False))


def write_plate_zarr(containers: list[str], path: str):
    import zarr

    shutil.rmtree(path, ignore_errors=True)
    root = zarr.open_group(path, mode="w")
    x = root.create_array("intensities", shape=(0, 3, SIZE, SIZE), chunks=(64, 3, SIZE, SIZE), dtype="uint16",
                          compressors=None)  # fmt: skip
    m = root.create_array("masks", shape=(0, SIZE, SIZE), chunks=(64, SIZE, SIZE), dtype="uint8", compressors=None)
    for container in containers:
        _, intensities, masks = image_crops(container)
        x.append(intensities, axis=0)
        m.append(masks, axis=0)
    return x, m


def count(paths: list[str]) -> tuple[int, float]:
    """Files and MB under ``paths`` (files or folders)."""
    n, size = 0, 0
    for p in paths:
        if os.path.isdir(p):
            for root, _, files in os.walk(p):
                n += len(files)
                size += sum(os.path.getsize(os.path.join(root, f)) for f in files)
        elif os.path.exists(p):
            n, size = n + 1, size + os.path.getsize(p)
    return n, size / 1e6


def read_png_epoch(folder: str) -> tuple[int, float]:
    import pandas as pd
    from PIL import Image

    rows = []
    for crops in sorted(glob.glob(os.path.join(folder, "*.crops"))):
        table = pd.read_csv(os.path.join(crops, "metadata.csv"))
        rows += [(crops, r) for r in table.to_dict("records")]
    order = np.random.default_rng(0).permutation(len(rows))
    start = time.perf_counter()
    for b in range(0, len(order), BATCH):
        batch = [rows[i] for i in order[b : b + BATCH]]
        x = np.stack([np.stack([np.asarray(Image.open(os.path.join(c, r[f"{ch}_file"]))) for ch in CHANNELS])
                      for c, r in batch])  # fmt: skip
        m = np.stack([np.asarray(Image.open(os.path.join(c, r["mask_file"]))) for c, r in batch])
        assert x.shape[1:] == (3, SIZE, SIZE) and m.shape[1:] == (SIZE, SIZE)
    return len(rows), time.perf_counter() - start


def read_store_epoch(folder: str) -> tuple[int, float]:
    from batchlib.crops import open_crops

    start = time.perf_counter()
    with open_crops(folder) as crops:
        n = sum(len(x) for x, _, _ in crops.batches(BATCH, shuffle=True, seed=0))
    return n, time.perf_counter() - start


def read_container_epoch(containers: list[str]) -> tuple[int, float]:
    import h5py

    start = time.perf_counter()
    files = [h5py.File(p, "r") for p in containers]
    sizes = [f["crops/masks"].shape[0] for f in files]
    where = np.concatenate([np.stack([np.full(n, i), np.arange(n)], 1) for i, n in enumerate(sizes)])
    order = np.random.default_rng(0).permutation(len(where))
    for b in range(0, len(order), BATCH):
        batch = where[order[b : b + BATCH]]
        x = np.stack([files[i]["crops/intensities"][k] for i, k in batch])
        m = np.stack([files[i]["crops/masks"][k] for i, k in batch])
        assert x.shape[1:] == (3, SIZE, SIZE) and m.shape[1:] == (SIZE, SIZE)
    for f in files:
        f.close()
    return len(where), time.perf_counter() - start


def read_zarr_epoch(path: str) -> tuple[int, float]:
    import zarr

    start = time.perf_counter()
    root = zarr.open_group(path, mode="r")
    x, m = root["intensities"], root["masks"]
    order = np.random.default_rng(0).permutation(x.shape[0])
    for b in range(0, len(order), BATCH):
        index = np.sort(order[b : b + BATCH])
        xs, ms = x.get_orthogonal_selection((index,)), m.get_orthogonal_selection((index,))
        assert xs.shape[0] == len(index) == ms.shape[0]
    return x.shape[0], time.perf_counter() - start


def workflow(folder: str, raw: str, *options: str) -> None:
    command = [sys.executable, SCRIPT, "--folder", folder, "--input-folder", raw, "--no-progress", *options]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def crop_step_seconds(folder: str, raw: str, *options: str) -> float:
    """Run the workflow's crop step; the seconds its jobs took (from the workflow's status file)."""
    import json

    workflow(folder, raw, *options)
    with open(os.path.join(folder, "batchlib", "CellAnalysisWorkflow.status")) as f:
        jobs = json.load(f)["jobs"]
    return sum(jobs[job].get("seconds") or 0.0 for job in ("CropCells", "IndexCrops") if job in jobs)


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def upload_seconds(folder: str, patterns: list[str], server, bucket: str) -> tuple[float, int]:
    from batchlib.s3 import upload_plate

    server.client().create_bucket(Bucket=bucket)
    shutil.rmtree(os.path.join(folder, "batchlib", "s3"), ignore_errors=True)
    start = time.perf_counter()
    report = upload_plate(folder, f"s3://{bucket}/r", server.endpoint_url, include=patterns, progress=False)
    elapsed = time.perf_counter() - start
    assert report.ok, report.summary()
    keys = 0
    for page in server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="r/"):
        keys += page.get("KeyCount", 0)
    return elapsed, keys


def main() -> int:
    from batchlib.demo import write_demo_plate
    from batchlib.io import open_file, write_image
    from batchlib.plate import row_name

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wells", type=int, default=24)
    parser.add_argument("--sites", type=int, default=8)
    parser.add_argument("--folder", default=None, help="where to make the work folder (default: temporary folder)")
    parser.add_argument("--no-upload", action="store_true", help="skip the S3 upload times")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="batchlib-bench-crops-", dir=args.folder)
    raw = os.path.join(work, "raw")
    wells = {f"{row_name(i // 12)}{i % 12 + 1:02d}": 1.0 + i % 2 for i in range(args.wells)}
    n_images = len(write_demo_plate(raw, wells=wells, sites=args.sites))
    base = os.path.join(work, "base", "Plate")
    workflow(base, raw, "--steps", "import,segment_nuclei,segment_cells", "--nuclei-method", "threshold")
    layouts = ["png", "store", "store-gzip", "container", "plate-zarr"]
    folders = {name: os.path.join(work, name, "Plate") for name in layouts}
    for folder in folders.values():
        shutil.copytree(base, folder)
    rows = {}
    for name, folder in folders.items():
        containers = sorted(glob.glob(os.path.join(folder, "*.h5")))
        changed = containers[len(containers) // 2]
        if name in ("png", "store", "store-gzip"):
            options = ["--steps", "crop", "--crop-format", "png" if name == "png" else "store"]
            options += ["--crop-compression", "gzip"] if name == "store-gzip" else []
            seconds = crop_step_seconds(folder, raw, *options)
            outputs = glob.glob(os.path.join(folder, "*.crops*")) + glob.glob(os.path.join(folder, "*_crops.parquet"))
            n, epoch = read_png_epoch(folder) if name == "png" else read_store_epoch(folder)
            with open_file(changed, "a") as f:  # its cells written again: the crop step redoes this image
                write_image(f, "cell_segmentation", f["cell_segmentation/s0"][...], is_label=True)
            redo = crop_step_seconds(folder, raw, *options)
            patterns = ["*.crops", "*.crops.hdf5", "*_crops.parquet"]
        elif name == "container":
            seconds = timed(write_in_containers, containers)
            outputs = containers
            n, epoch = read_container_epoch(containers)
            redo = timed(write_in_containers, [changed])
            patterns = ["*.h5"]
        else:
            path = os.path.join(folder, "crops.zarr")
            seconds = timed(write_plate_zarr, containers, path)
            outputs = [path]
            n, epoch = read_zarr_epoch(path)
            # A changed image with another cell count shifts every later cell: the plate array is rewritten.
            redo = timed(write_plate_zarr, containers, path)
            patterns = ["crops.zarr"]
        files, mb = count(outputs)
        rows[name] = {"write": seconds, "files": files, "mb": mb, "cells": n, "epoch": epoch, "redo": redo,
                      "patterns": patterns}  # fmt: skip
    if not args.no_upload:
        from seaweed import ACCESS_KEY, SECRET_KEY, SeaweedServer

        os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        server = SeaweedServer(os.path.join(work, "seaweedfs")).start()
        try:
            for name, row in rows.items():
                row["upload"], row["objects"] = upload_seconds(folders[name], row["patterns"], server, name)
        finally:
            server.stop()
    print(f"{n_images} images of 512 x 512, 3 channels; crops {SIZE} x {SIZE}; {rows['store']['cells']} cells")
    print("layout        write s   files      MB   epoch s  redo one image s   upload s  objects")
    for name, row in rows.items():
        upload = f"{row['upload']:9.1f}  {row['objects']:7d}" if "upload" in row else "        -        -"
        print(f"{name:12s} {row['write']:8.1f} {row['files']:7d} {row['mb']:7.0f} {row['epoch']:9.2f} "
              f"{row['redo']:17.2f} {upload}")  # fmt: skip
    print("(container: files and MB are the whole containers, images included; png and store: the crop step's")
    print(" seconds from the workflow's status file)")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
