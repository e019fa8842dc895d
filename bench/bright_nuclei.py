"""F1 of the StarDist job when a few nuclei are far brighter than the rest (unsaturated).

Synthetic 512 x 512 images (:func:`batchlib.synthetic.synthetic_site`, 64 or 8
nuclei of ~18 px), the first 5 nuclei of each made 3-20 times brighter above
the background; F1 at IoU 0.5 through ``SegmentNucleiStarDist.predict`` with
the estimated diameter, against the same model with the intensity scale set
by the percentiles alone (no ceiling from the typical nucleus,
:mod:`batchlib.brightness`).

Run:  python bench/bright_nuclei.py [--images 6]
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from batchlib.jobs.segmentation import SegmentNucleiStarDist
from batchlib.jobs.stardist_model import prepare_for_model
from batchlib.nucleus_size import estimate_diameter
from batchlib.synthetic import synthetic_site

FACTORS = (1, 3, 5, 10, 20)
N_BRIGHT = 5


def brightened(factor: float, n_nuclei: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic image with its first :data:`N_BRIGHT` nuclei ``factor`` times brighter, and its labels."""
    channels, labels, _ = synthetic_site((512, 512), n_nuclei=n_nuclei, seed=seed)
    image = channels["nuclei"].astype(np.float64)
    background = np.percentile(image, 5)
    bright = np.isin(labels, np.unique(labels[labels > 0])[:N_BRIGHT])
    image[bright] = background + (image[bright] - background) * factor
    return np.clip(image, 0, 65535).astype(np.uint16), labels


def main() -> int:
    from stardist.matching import matching_dataset

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=6, help="images per row")
    args = parser.parse_args()
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
