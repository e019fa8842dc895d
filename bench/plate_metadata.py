"""Cost of plate metadata and illumination correction.

(a) Reading a Harmony index of N images (default 3,000: 96 wells x ~8 fields x 4 channels, one plane) with
    ``read_harmony``, against the floor of parsing the same XML with ``xml.etree`` alone. Target: under 1 s.
(b) The measure job on M images with and without illumination correction (the same containers, a field
    estimated beforehand), after a warm-up run three times each in alternating order, best of each.
    Target: correction adds at most 5%.
(c) Illumination accuracy on the plate tests/test_illumination.py builds (cells on a uniform background, lit by a
    field falling off 40% to the corners): the field estimated from 24 images against the truth (target within
    5%), and per-cell mean intensities after correction against flat light (target within 3%), and before.

Run:  python bench/plate_metadata.py [--images 3000] [--measure-images 16] [--size 512]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))


def bench_index(n_images: int, work: str) -> None:
    from test_readers import write_harmony_index

    from batchlib.readers import read_harmony

    wells = [(r, c) for r in range(1, 9) for c in range(1, 13)]
    per_well = max(1, -(-n_images // (len(wells) * 4)))  # at least n_images
    images = [(r, c, f, 1, ch) for r, c in wells for f in range(1, per_well + 1) for ch in ("1", "2", "3", "4")]
    folder = os.path.join(work, "index")
    os.makedirs(folder)
    channels = {"1": "HOECHST 33342", "2": "Alexa 488", "3": "Alexa 568", "4": "Alexa 647"}
    index = write_harmony_index(Path(folder), images, channels=channels)
    floor = min(_timed(lambda: ET.parse(index)) for _ in range(3))
    ours = min(_timed(lambda: read_harmony(folder)) for _ in range(3))
    size = os.path.getsize(index) / 1e6
    print(
        f"(a) Harmony index of {len(images)} images ({size:.1f} MB): read_harmony {ours:.3f} s "
        f"(target < 1 s: {'PASS' if ours < 1 else 'FAIL'}); xml.etree parse alone {floor:.3f} s, "
        f"ratio {ours / floor:.2f}"
    )


def bench_measure(n_images: int, size: int, work: str) -> None:
    from batchlib import run_workflow
    from batchlib.io import open_file, write_image
    from batchlib.io.stamps import write_key_stamps
    from batchlib.jobs.illumination import EstimateIllumination
    from batchlib.jobs.measure import MeasureObjects
    from batchlib.synthetic import synthetic_site

    folder = os.path.join(work, "plate")
    os.makedirs(folder)
    for i in range(n_images):
        channels, nuclei, cells = synthetic_site((size, size), n_nuclei=size // 8, seed=i)
        with open_file(os.path.join(folder, f"WellA01_PointA01_{i:04d}_plate.h5"), "a") as f:
            for name, image in channels.items():
                write_image(f, name, image)
            write_image(f, "nucleus_segmentation", nuclei, is_label=True)
            write_image(f, "cell_segmentation", cells, is_label=True)
            write_key_stamps(f, {k: "bench" for k in [*channels, "nucleus_segmentation", "cell_segmentation"]})
    names = ["nuclei", "cells", "marker"]
    run_workflow("Field", folder, [EstimateIllumination(names)], progress=False)
    plain = MeasureObjects(names, solidity=False)
    corrected = MeasureObjects(names, solidity=False, illumination="{plate}_illumination.hdf5")
    times = {"plain": [], "corrected": []}
    pairs = [("plain", plain), ("corrected", corrected)]
    run_workflow("Measure", folder, [plain], force_recompute=True, progress=False)  # warm-up: caches, imports
    for round_ in range(3):
        for label, job in pairs if round_ % 2 == 0 else pairs[::-1]:
            start = time.perf_counter()
            run_workflow("Measure", folder, [job], force_recompute=True, progress=False)
            times[label].append(time.perf_counter() - start)
    base, with_field = min(times["plain"]), min(times["corrected"])
    extra = with_field / base - 1
    print(
        f"(b) measure {n_images} images of {size}x{size}, 3 channels: {base:.2f} s plain, {with_field:.2f} s "
        f"corrected: {extra:+.1%} (target <= 5%: {'PASS' if extra <= 0.05 else 'FAIL'})"
    )


def bench_illumination(n_images: int = 24) -> None:
    import numpy as np
    from scipy import ndimage as ndi
    from test_illumination import site, vignetting

    from batchlib.illumination import apply_flat_field, estimate_flat_field

    field = vignetting()
    sites = [site(i, field) for i in range(n_images)]
    estimate = estimate_flat_field([image for *_, image in sites])
    field_error = float(np.abs(estimate / (field / field.mean()) - 1).max())
    corrected, raw = [], []
    for _, cells, flat, image in sites:
        ids = np.unique(cells)[1:]
        truth = ndi.mean(flat, cells, ids)
        corrected.append(ndi.mean(apply_flat_field(image, estimate).astype(float), cells, ids) / field.mean() / truth)
        raw.append(ndi.mean(image.astype(float), cells, ids) / truth)
    worst = float(np.abs(np.concatenate(corrected) - 1).max())
    before = float(np.abs(np.concatenate(raw) - 1).max())
    print(
        f"(c) illumination, {n_images} images, 40% fall-off: field within {field_error:.1%} of the truth "
        f"(target 5%); per-cell means within {worst:.1%} after correction (target 3%), {before:.1%} before"
    )


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--measure-images", type=int, default=32)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    os.environ.setdefault("LOGLEVEL", "WARNING")
    work = tempfile.mkdtemp(prefix="batchlib-bench-")
    try:
        print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
        bench_index(args.images, work)
        bench_measure(args.measure_images, args.size, work)
        bench_illumination()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
