"""Choose a StarDist model's probability and overlap thresholds for the segment job's own path.

    python scripts/tune_thresholds.py [--model batchlib/models/nuclei_stardist] [--write]

StarDist's ``optimize_thresholds`` picks them on validation images at the
model's own size, maximizing a detection accuracy averaged over IoU 0.3, 0.5
and 0.7. The segment job uses the model differently: every image is first
rescaled so its nuclei have the model's diameter, whatever size they have,
and batchlib reports F1 at IoU 0.5. This script picks the thresholds for that
use: it runs each validation image through the job's path once (estimate the
nucleus diameter, rescale, predict the probability and distance maps) and
then, for every pair of thresholds, turns the maps into labels on the
image's own grid and scores them (F1 at IoU 0.5).

Validation images, none of them used by ``bench/segmentation_quality.py``:

- ndev-sampledata frame 6 (the training script's validation frame), as if
  imaged at each of its acquisition scales (0.33x to 3x);
- synthetic images (:mod:`batchlib.synthetic_nuclei`, every appearance) with
  nucleus diameters drawn from 8 to 100 px, from a seed of their own.

The score of a pair of thresholds is the mean F1 over groups: each real scale
is a group, and the synthetic images form four groups by diameter (8-12,
12-24, 24-48, 48-100 px), so that no scale or size outweighs the others by its
number of nuclei. With ``--write`` the best pair goes into the model's
``thresholds.json``; the table is printed either way.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, os.path.dirname(__file__))

from train_nuclei_model import ACQUISITION_SCALES, VAL_FRAMES, real_frames, resample

from batchlib.jobs.stardist_model import SHIPPED_MODEL, load_stardist, prepare_for_model, recorded_diameter
from batchlib.nucleus_size import estimate_diameter, rescale_factor
from batchlib.synthetic_nuclei import nuclei_image, random_appearance

#: Probability thresholds tried, and overlap (NMS) thresholds.
PROB_THRESHOLDS = tuple(round(p, 3) for p in np.arange(0.35, 0.751, 0.025))
NMS_THRESHOLDS = (0.3, 0.4, 0.5)
#: Synthetic validation images, their seed, and the diameter groups they are scored in.
SYNTHETIC_IMAGES = 32
SYNTHETIC_SEED = 424242
DIAMETER_GROUPS = ((8, 12), (12, 24), (24, 48), (48, 100.001))


def validation_images() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(group, image, labels) for every validation image."""
    images, labels = real_frames()
    out = []
    for t in VAL_FRAMES:
        for scale in ACQUISITION_SCALES:
            x, y = resample(images[t], labels[t], scale)
            out.append((f"real x{scale:g}", x, y))
    rng = np.random.default_rng(SYNTHETIC_SEED)
    for _ in range(SYNTHETIC_IMAGES):
        diameter = float(np.exp(rng.uniform(np.log(8), np.log(100))))
        side = int(min(1024, max(256, 12 * diameter)))
        x, y = nuclei_image((side, side), diameter, random_appearance(rng), rng)
        low, high = next(g for g in DIAMETER_GROUPS if g[0] <= diameter < g[1])
        out.append((f"synthetic {low:g}-{min(high, 100):.0f} px", x.astype(np.float32), y.astype(np.int32)))
    return out


def maps(model, image: np.ndarray, model_diameter: float | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Probability and distance maps of ``image`` through the job's path, and the factor it was rescaled by."""
    from scipy import ndimage as ndi

    scale = rescale_factor(estimate_diameter(image), model_diameter)
    x = prepare_for_model(image, scale)
    if scale != 1:
        x = ndi.zoom(x, scale, order=1)  # as predict_instances(scale=...) does
    prob, dist = model.predict(x)
    return prob, dist, scale


def counts(model, shape, prob, dist, scale, truth, prob_thresh, nms_thresh) -> tuple[int, int, int]:
    """True positives, predictions and true objects at IoU 0.5 for one pair of thresholds."""
    from stardist.matching import matching

    (labels, _) = model._instances_from_prediction(
        shape,
        prob,
        dist,
        prob_thresh=prob_thresh,
        nms_thresh=nms_thresh,
        scale=None if scale == 1 else {"X": scale, "Y": scale},
    )
    m = matching(truth, labels, thresh=0.5)
    return m.tp, m.n_pred, m.n_true


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=SHIPPED_MODEL, help="StarDist model folder")
    parser.add_argument("--write", action="store_true", help="write the best pair into the model's thresholds.json")
    args = parser.parse_args()

    start = time.perf_counter()
    model = load_stardist(args.model)
    model_diameter = recorded_diameter(args.model)
    images = validation_images()
    predicted = [maps(model, x, model_diameter) for _, x, _ in images]
    print(f"{len(images)} validation images predicted in {time.perf_counter() - start:.0f} s", flush=True)

    groups = sorted({g for g, _, _ in images}, key=lambda g: (g.startswith("synthetic"), g))
    table = {}
    for nms in NMS_THRESHOLDS:
        for prob in PROB_THRESHOLDS:
            totals = {g: np.zeros(3, int) for g in groups}
            for (group, x, y), (p, d, s) in zip(images, predicted):
                totals[group] += counts(model, x.shape, p, d, s, y, prob, nms)
            f1 = {g: 2 * tp / max(1, n_pred + n_true) for g, (tp, n_pred, n_true) in totals.items()}
            table[(prob, nms)] = (float(np.mean(list(f1.values()))), f1)

    current = model.thresholds._asdict()
    best = max(table, key=lambda k: table[k][0])
    print(f"\nF1 at IoU 0.5 by group (mean over groups first); model's thresholds now {current}")
    print("  prob   nms   mean   " + "  ".join(f"{g:>18s}" for g in groups))
    for (prob, nms), (mean, f1) in sorted(table.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        mark = " <- best" if (prob, nms) == best else ""
        print(f"  {prob:5.3f}  {nms:3.1f}  {mean:.3f}  " + "  ".join(f"{f1[g]:18.3f}" for g in groups) + mark)
    near = min(table, key=lambda k: abs(k[0] - current["prob"]) + abs(k[1] - current["nms"]))
    print(
        f"\nbest: prob {best[0]}, nms {best[1]}: mean F1 {table[best][0]:.3f} "
        f"(nearest to the current pair, prob {near[0]}, nms {near[1]}: {table[near][0]:.3f}); "
        f"{time.perf_counter() - start:.0f} s"
    )
    if args.write:
        path = os.path.join(args.model, "thresholds.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"prob": best[0], "nms": best[1]}, f)
        print(f"written to {path}")
    return 0 if math.isfinite(table[best][0]) else 1


if __name__ == "__main__":
    sys.exit(main())
