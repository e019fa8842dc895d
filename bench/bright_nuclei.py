"""F1 of the StarDist job when a few nuclei are far brighter than the rest (unsaturated).

Synthetic 512 x 512 images (:func:`batchlib.synthetic.synthetic_site`, 64 or 8
nuclei of ~18 px), the first 5 nuclei of each made 3-20 times brighter above
the background; F1 at IoU 0.5 through ``SegmentNucleiStarDist.predict`` with
the estimated diameter, against the same model with the intensity scale set
by the percentiles alone (no ceiling from the typical nucleus,
:mod:`batchlib.brightness`).

``--ceiling-check`` instead goes over every image of
``bench/segmentation_quality.py`` (real frames at every scale, the synthetic
and debris sets): for each row, the largest ratio of the 99.8th percentile
to the typical nucleus (both above the 1st percentile) and how many images
the ceiling changes (their normalized input differs from the percentiles
alone); and the time of :func:`~batchlib.brightness.typical_nucleus_level`
on 512 x 512 and 2048 x 2048 images.

Run:  python bench/bright_nuclei.py [--images 6] [--ceiling-check]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from batchlib.brightness import typical_nucleus_level
from batchlib.jobs.segmentation import SegmentNucleiStarDist
from batchlib.jobs.stardist_model import normalize, prepare_for_model
from batchlib.nucleus_size import estimate_diameter
from batchlib.synthetic import brighten_nuclei, synthetic_site

FACTORS = (1, 3, 5, 10, 20)
N_BRIGHT = 5


def brightened(factor: float, n_nuclei: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic image with its first :data:`N_BRIGHT` nuclei ``factor`` times brighter, and its labels."""
    channels, labels, _ = synthetic_site((512, 512), n_nuclei=n_nuclei, seed=seed)
    return brighten_nuclei(channels["nuclei"], labels, factor, N_BRIGHT), labels


def ceiling_check() -> None:
    """Where the ceiling binds among the quality bench's images, and what the typical level costs."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import segmentation_quality as quality

    from batchlib.saturation import tame_saturation

    sets = quality.real_sets(quality.SCALES)
    seeds = quality.appearance_seeds(quality.IMAGES_PER_DIAMETER)
    sets["synthetic"] = quality.synthetic_set(quality.DIAMETERS, seeds)
    sets["debris"] = quality.debris_set(seeds)
    print("| set | row | images | largest 99.8th percentile / typical nucleus | images the ceiling changes |")
    print("|---|---|---|---|---|")
    for name, rows in sets.items():
        for row in rows:
            ratios, changed = [], 0
            for image in row.images:
                diameter = estimate_diameter(image)
                tamed = tame_saturation(image)
                low, high = np.percentile(tamed[np.isfinite(tamed)], [1, 99.8])
                typical = typical_nucleus_level(tamed, diameter)
                if typical is not None and typical > low:
                    ratios.append((high - low) / (typical - low))
                changed += not np.array_equal(normalize(image, diameter=diameter), normalize(image))
            largest = f"{max(ratios):.2f}" if ratios else "-"
            print(f"| {name} | {row.key} | {len(row.images)} | {largest} | {changed} |", flush=True)
    for side, n_nuclei in ((512, 64), (2048, 900)):
        image = synthetic_site((side, side), n_nuclei=n_nuclei, seed=1)[0]["nuclei"]
        for diameter in (8.0, 18.0, 40.0):
            typical_nucleus_level(image, diameter)
            start = time.perf_counter()
            for _ in range(5):
                typical_nucleus_level(image, diameter)
            ms = 1000 * (time.perf_counter() - start) / 5
            print(f"typical_nucleus_level, {side} x {side}, nuclei of {diameter:.0f} px: {ms:.1f} ms")


def main() -> int:
    from stardist.matching import matching_dataset

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=6, help="images per row")
    parser.add_argument("--ceiling-check", action="store_true", help="the quality bench's images instead (above)")
    args = parser.parse_args()
    if args.ceiling_check:
        ceiling_check()
        return 0
    job = SegmentNucleiStarDist()
    print(f"F1 at IoU 0.5, {args.images} images of 512 x 512 per row, the first {N_BRIGHT} nuclei brighter")
    print("| nuclei per image | brighter by | percentiles only | with the ceiling |")
    print("|---|---|---|---|")
    for n_nuclei in (64, 8):
        for factor in FACTORS:
            truth, ours, percentiles_only = [], [], []
            for seed in range(100, 100 + args.images):
                image, labels = brightened(factor, n_nuclei, seed)
                labels_now, scale = job.predict(image, estimate_diameter(image))
                truth.append(labels)
                ours.append(labels_now)
                percentiles_only.append(job._predict_prepared(prepare_for_model(image, scale), scale))
            before, now = (
                matching_dataset(truth, predicted, thresh=0.5, show_progress=False).f1
                for predicted in (percentiles_only, ours)
            )
            print(f"| {n_nuclei} | {factor}x | {before:.3f} | {now:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
