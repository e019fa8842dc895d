"""Nuclei segmentation quality through the segment jobs, at nucleus sizes from 4 to 100 pixels.

Every image goes through the job as in a workflow: it is written into a
container of a temporary plate folder, the job runs over the folder
(``run_workflow``, one run per set, the StarDist model loaded once), and its
``nucleus_segmentation`` is read back and matched against the ground truth
(``stardist.matching.matching_dataset``: F1 at IoU 0.5, pooled over the
images of a row, and the mean IoU of the matched pairs).

Sets:

- ``ndev``: the real Hoechst frames 7-9 of ndev-sampledata's time series
  (210 x 576, nuclei ~12 px), held out from the shipped model's training,
  rescaled by 0.33, 0.5, 0.75, 1, 1.5, 2 and 3;
- ``stardist_image``: StarDist's own labelled test image (512 x 512, nuclei
  ~24 px, another microscope, never used in training), the same scales;
- ``debris``: the synthetic images at 24 px, clean and with one saturated
  square of 2 diameters a side (fluorescent debris), nuclei touching it
  left out of the truth and of what was found: debris must not blind the
  segmentation of the rest (no target; printed for the record);
- ``synthetic``: :func:`batchlib.synthetic_nuclei.nuclei_image` at nucleus
  diameters 8, 12, 16, 24, 32, 48, 64 and 100 px: 12 images per diameter,
  each 16 diameters a side (at least 256 px), so that every diameter has
  about as many nuclei (~1000); the same 12 appearances at every diameter
  (:func:`random_appearance` seeds: from 0 on, each seed that adds a kind
  not yet held, until widefield and confocal, sparse and confluent,
  saturated, defocused, mitosis-heavy, gamma-distorted and low-contrast
  images all occur, then the next seeds in order), fixed seeds.

Run:

    python bench/segmentation_quality.py                        # both methods, as the code is now
    python bench/segmentation_quality.py --as-before --save bench/segmentation_quality_baseline.json
    python bench/segmentation_quality.py --quick                # a smoke test: fewer scales and images
    python bench/segmentation_quality.py --method stardist --model path/to/model_folder --save new.json

A full run takes about 2 minutes on 2 cores (a third of it making the
synthetic images), ``--quick`` about 20 s; timings are printed per set.

``--as-before`` measures the state before size-aware segmentation with the
current code: the shipped model's files at commit 7033e92 (taken from git,
without ``batchlib.json``, so images are not rescaled) and the threshold
method with its former fixed settings (sigma 1.5, min size 20, min distance
4). Each row is printed with the baseline's numbers beside it (``--baseline``,
by default ``bench/segmentation_quality_baseline.json``) where the baseline
saw the same images.

Targets (StarDist; the threshold method is measured against the same bar):
on the held-out real frames, F1 >= 0.85 at every scale from 0.5 to 2 and
>= 0.80 at 0.33 and 3, and F1 at scale 1 not below the baseline's (strictly:
any drop fails; the matched and found counts are printed beside); on the
synthetic set, F1 >= 0.9 at every diameter from 8 to 100 px. The summary
applies the real-frame targets to the StarDist test image as well.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("LOGLEVEL", "WARNING")

import numpy as np

from batchlib import run_workflow
from batchlib.io import open_file, read_image, write_image
from batchlib.jobs.segmentation import SegmentNucleiStarDist, SegmentNucleiThreshold
from batchlib.jobs.stardist_model import SHIPPED_MODEL, recorded_diameter
from batchlib.nucleus_size import DIAMETER_ATTR, SCALE_ATTR

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BASELINE = os.path.join(REPO, "bench", "segmentation_quality_baseline.json")
#: The commit whose shipped model files ``--as-before`` uses (before ``batchlib.json`` existed).
BEFORE_COMMIT = "7033e92"
MODEL_FILES = ("config.json", "thresholds.json", "weights_best.h5")
#: The threshold method's settings before they followed the nucleus diameter.
BEFORE_THRESHOLD = {"sigma": 1.5, "min_size": 20, "min_distance": 4}

SCALES = (0.33, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
QUICK_SCALES = (0.5, 1.0, 2.0)
HELD_OUT_FRAMES = (7, 8, 9)
DIAMETERS = (8, 12, 16, 24, 32, 48, 64, 100)
QUICK_DIAMETERS = (8, 24, 64)
IMAGES_PER_DIAMETER, QUICK_IMAGES_PER_DIAMETER = 12, 2
#: A synthetic image is this many nucleus diameters a side (at least MIN_SIDE pixels).
DIAMETERS_A_SIDE, MIN_SIDE = 16, 256

#: Kinds of appearance the synthetic set must hold, as tests on :class:`Appearance`.
APPEARANCE_KINDS = {
    "widefield": lambda a: a.halo > 0,
    "confocal": lambda a: a.halo == 0,
    "sparse": lambda a: a.density < 0.1,
    "confluent": lambda a: a.density >= 0.5,
    "saturated": lambda a: a.saturated_fraction > 0,
    "defocused": lambda a: a.defocus > 0,
    "mitosis-heavy": lambda a: a.mitotic_fraction > 0.06,
    "gamma": lambda a: a.gamma != 1,
    "low contrast": lambda a: a.brightness < 3 * a.background,
}

#: Targets: F1 at these real-image scales, and on every synthetic diameter.
REAL_TARGETS = ((0.85, (0.5, 0.75, 1.0, 1.5, 2.0)), (0.80, (0.33, 3.0)))
SYNTHETIC_TARGET = 0.9

#: Key of the synthetic set's results by appearance (the same images as ``synthetic``, grouped by seed).
BY_APPEARANCE = "synthetic_by_appearance"

SET_TITLES = {
    "ndev": "ndev-sampledata Hoechst frames 7-9 (held out; 210x576 and nuclei ~12 px at scale 1)",
    "stardist_image": "StarDist's labelled test image (never trained on; 512x512 and nuclei ~24 px at scale 1)",
    "synthetic": "synthetic nuclei (batchlib.synthetic_nuclei)",
    "debris": "synthetic nuclei at 24 px, clean and beside a saturated square of 48 px (debris)",
}


@dataclass
class Row:
    """The images and ground truth of one table row (a scale or a diameter)."""

    key: str
    images: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    kinds: list[np.ndarray] = field(default_factory=list)  # synthetic only: the kind of each object


def rescaled(image: np.ndarray, labels: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (linear, anti-aliased when shrinking, back in its dtype) and ``labels`` (nearest) scaled by ``factor``.

    Parameters
    ----------
    image : numpy.ndarray
        Integer or float image.
    labels : numpy.ndarray
        Its label image.
    factor : float
        Zoom factor; 1 returns both unchanged.

    Returns
    -------
    tuple of numpy.ndarray
        The image and the labels on the new grid.
    """
    if factor == 1:
        return image, labels
    from skimage.transform import rescale

    x = rescale(image.astype(np.float32), factor, order=1, anti_aliasing=factor < 1, preserve_range=True)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        x = np.clip(np.rint(x), info.min, info.max)
    y = rescale(labels, factor, order=0, anti_aliasing=False, preserve_range=True)
    return x.astype(image.dtype), y.astype(labels.dtype)


def real_sets(scales: tuple[float, ...]) -> dict[str, list[Row]]:
    """The held-out ndev frames and StarDist's test image at each of ``scales``.

    Parameters
    ----------
    scales : tuple of float
        Zoom factors.

    Returns
    -------
    dict
        ``{"ndev": rows, "stardist_image": rows}``, one row per scale.
    """
    import ndev_sampledata
    import tifffile
    from stardist.data import test_image_nuclei_2d

    path = os.path.join(os.path.dirname(ndev_sampledata.__file__), "samples", "scratch-assay-labeled-10T-2Ch.tiff")
    data = tifffile.imread(path)  # (C, T, Y, X): Hoechst, oblique, nuclei labels, cytoplasm labels
    frames = [(data[0, t], data[2, t].astype(np.int32)) for t in HELD_OUT_FRAMES]
    image, labels = test_image_nuclei_2d(return_mask=True)
    sets = {}
    for name, pairs in (("ndev", frames), ("stardist_image", [(image, labels.astype(np.int32))])):
        sets[name] = []
        for scale in scales:
            row = Row(f"{scale:g}")
            for x, y in pairs:
                x, y = rescaled(x, y, scale)
                row.images.append(x)
                row.labels.append(y)
            sets[name].append(row)
    return sets


def appearance_seeds(n: int) -> list[int]:
    """Seeds of :func:`random_appearance`, in order from 0, that together hold every kind of APPEARANCE_KINDS.

    Each seed is taken if it adds a kind not yet held; once all are held the
    next seeds fill up to ``n``. With a small ``n`` (``--quick``) the first
    ``n`` of them.

    Parameters
    ----------
    n : int
        How many seeds.

    Returns
    -------
    list of int
    """
    from batchlib.synthetic_nuclei import random_appearance

    seeds, held = [], set()
    for seed in range(10_000):
        kinds = {kind for kind, test in APPEARANCE_KINDS.items() if test(random_appearance(seed))}
        if (kinds - held) or (held == set(APPEARANCE_KINDS) and len(seeds) < n):
            seeds.append(seed)
            held |= kinds
        if held == set(APPEARANCE_KINDS) and len(seeds) >= n:
            break
    return seeds[:n]


def describe_appearance(seed: int) -> str:
    """The kinds of APPEARANCE_KINDS that appearance ``seed`` is, comma-separated."""
    from batchlib.synthetic_nuclei import random_appearance

    a = random_appearance(seed)
    return ", ".join(kind for kind, test in APPEARANCE_KINDS.items() if test(a))


def synthetic_set(diameters: tuple[int, ...], seeds: list[int]) -> list[Row]:
    """One row per diameter: an image per appearance seed, :data:`DIAMETERS_A_SIDE` diameters a side.

    Parameters
    ----------
    diameters : tuple of int
        Nucleus diameters in pixels.
    seeds : list of int
        Appearance seeds (:func:`random_appearance`), the same at every diameter.

    Returns
    -------
    list of Row
    """
    from batchlib.synthetic_nuclei import nuclei_image, random_appearance

    rows = []
    for d in diameters:
        side = max(MIN_SIDE, 64 * round(DIAMETERS_A_SIDE * d / 64))
        row = Row(str(d))
        for seed in seeds:
            image, labels, kinds = nuclei_image(
                (side, side), d, random_appearance(seed), rng=1000 * d + seed, return_kinds=True
            )
            row.images.append(image)
            row.labels.append(labels)
            row.kinds.append(kinds)
        rows.append(row)
    return rows


#: The synthetic diameter of the debris set, and the side of its saturated square in diameters.
DEBRIS_DIAMETER, DEBRIS_SIDE = 24, 2


def debris_set(seeds: list[int]) -> list[Row]:
    """The synthetic images at :data:`DEBRIS_DIAMETER` px, clean and with a saturated square (debris).

    The square (:data:`DEBRIS_SIDE` diameters a side, at the dtype's
    maximum) sits a quarter of the way into the image; nuclei it touches are
    left out of the ground truth (:func:`without_debris` drops the found
    objects that touch it).
    """
    (clean,) = synthetic_set((DEBRIS_DIAMETER,), seeds)
    dirty = Row("debris")
    for image, labels in zip(clean.images, clean.labels):
        image = image.copy()
        image[debris_square(image.shape)] = np.iinfo(image.dtype).max if image.dtype.kind in "iu" else image.max() * 20
        dirty.images.append(image)
        dirty.labels.append(without_debris(labels))
    clean.key = "clean"
    return [clean, dirty]


def debris_square(shape: tuple[int, ...]) -> tuple[slice, slice]:
    side, y, x = DEBRIS_SIDE * DEBRIS_DIAMETER, shape[0] // 4, shape[1] // 4
    return slice(y, y + side), slice(x, x + side)


def without_debris(labels: np.ndarray) -> np.ndarray:
    """``labels`` without the objects that touch the debris square."""
    touching = np.unique(labels[debris_square(labels.shape)])
    return np.where(np.isin(labels, touching[touching > 0]), 0, labels)


def model_as_before(work: str) -> str:
    """A model folder with the shipped model's files of :data:`BEFORE_COMMIT`, from git (no ``batchlib.json``).

    Parameters
    ----------
    work : str
        Folder to put it in.

    Returns
    -------
    str
        The model folder.
    """
    folder = os.path.join(work, "nuclei_stardist")
    os.makedirs(folder)
    for name in MODEL_FILES:
        with open(os.path.join(folder, name), "wb") as f:
            subprocess.run(
                ["git", "-C", REPO, "show", f"{BEFORE_COMMIT}:batchlib/models/nuclei_stardist/{name}"],
                stdout=f,
                check=True,
            )
    return folder


def equivalent_diameters(labels: list[np.ndarray]) -> np.ndarray:
    """``2 sqrt(area / pi)`` of every object of every label image."""
    areas = [np.bincount(y.ravel())[1:] for y in labels]
    areas = np.concatenate(areas) if areas else np.zeros(0)
    return 2 * np.sqrt(areas[areas > 0] / np.pi)


def segment(job, rows: list[Row], work: str) -> tuple[list[list[np.ndarray]], list[list[tuple[float, float]]], float]:
    """Run ``job`` over every image of ``rows`` in one plate folder; the labels, the attributes and the job's time.

    Parameters
    ----------
    job : BatchJobOnContainer
        A nuclei segment job reading ``nuclei`` and writing ``nucleus_segmentation``.
    rows : list of Row
        The images.
    work : str
        An empty folder for the plate.

    Returns
    -------
    labels : list of list of numpy.ndarray
        Per row, per image, the job's labels.
    attrs : list of list of tuple
        Per row, per image, the nucleus diameter and the scale the job recorded.
    seconds : float
        Wall time of ``run_workflow``.
    """
    names = []
    for r, row in enumerate(rows):
        names.append([])
        for i, image in enumerate(row.images):
            name = f"WellC01_PointC01_{r:02d}{i:02d}_x.h5"
            with open_file(os.path.join(work, name), "w") as f:
                write_image(f, "nuclei", image)
            names[-1].append(name)
    start = time.perf_counter()
    result = run_workflow("q", work, [job], progress=False)[job.name]
    seconds = time.perf_counter() - start
    expected = sum(len(row.images) for row in rows)
    if result.processed != expected:
        raise RuntimeError(f"{job.name} processed {result.processed} of {expected} images: {result}")
    labels, attrs = [], []
    for row_names in names:
        labels.append([])
        attrs.append([])
        for name in row_names:
            with open_file(os.path.join(work, name), "r") as f:
                labels[-1].append(read_image(f, "nucleus_segmentation"))
                attrs[-1].append((float(f.attrs[DIAMETER_ATTR]), float(f.attrs[SCALE_ATTR])))
    return labels, attrs, seconds


def scores(truth: list[np.ndarray], predicted: list[np.ndarray], attrs: list[tuple[float, float]]) -> dict:
    """F1 at IoU 0.5 and more for one row (pooled over its images), and what the job recorded.

    Parameters
    ----------
    truth, predicted : list of numpy.ndarray
        Ground truth and job labels, image by image.
    attrs : list of tuple
        The job's nucleus diameter and scale per image.

    Returns
    -------
    dict
        ``f1``, ``mean_iou`` (of the matched pairs), ``precision``, ``recall``, ``n_images``,
        ``n_true``, ``n_matched``, ``n_pred``, ``shape`` (of the first image), ``true_diameter`` (median equivalent
        diameter of the ground truth), ``estimated_diameter`` and ``scale`` (medians over the images).
    """
    from stardist.matching import matching_dataset

    stats = matching_dataset(truth, predicted, thresh=0.5, show_progress=False)
    diameters = [d for d, _ in attrs if np.isfinite(d)]
    return {
        "f1": float(stats.f1),
        "mean_iou": float(stats.mean_matched_score),
        "precision": float(stats.precision),
        "recall": float(stats.recall),
        "n_images": len(truth),
        "n_true": int(stats.n_true),
        "n_matched": int(stats.tp),
        "n_pred": int(stats.n_pred),
        "shape": list(truth[0].shape),
        "true_diameter": float(np.median(equivalent_diameters(truth))),
        "estimated_diameter": float(np.median(diameters)) if diameters else None,
        "scale": float(np.median([s for _, s in attrs])),
    }


#: Object classes of the recall-by-kind table: (name, kind of batchlib.synthetic_geometry or None for any).
KIND_CLASSES = (
    ("interphase", 0),
    ("mitotic", 1),
    ("anaphase/telophase", 2),
    ("apoptotic fragment", 3),
)
#: An object keeping less than this share of its row's median interphase area was cut by the image border.
SLIVER = 0.25


def recall_by_kind(rows: list[Row], predicted: list[list[np.ndarray]]) -> dict[str, dict[str, list[int]]]:
    """Per diameter and object class, [objects, found at IoU >= 0.5]: which nuclei the recall loses.

    Classes: :data:`KIND_CLASSES` for objects away from the border, plus "cut by the border" (touching it)
    split into slivers (under :data:`SLIVER` of the median interphase area) and the rest.
    """
    table: dict[str, dict[str, list[int]]] = {}
    for row, row_predicted in zip(rows, predicted):
        counts = table.setdefault(row.key, {})
        for truth, pred, kinds in zip(row.labels, row_predicted, row.kinds):
            n = int(truth.max())
            if not n:
                continue
            # IoU of every ground-truth object with its best prediction (IoU >= 0.5 is a unique match).
            pairs = truth.ravel().astype(np.int64) * (int(pred.max()) + 1) + pred.ravel()
            overlap = np.bincount(pairs, minlength=(n + 1) * (int(pred.max()) + 1)).reshape(n + 1, -1)
            union = overlap.sum(1, keepdims=True) + overlap.sum(0, keepdims=True) - overlap
            iou = overlap[1:, 1:] / np.maximum(union[1:, 1:], 1)
            found = iou.max(1) >= 0.5 if iou.shape[1] else np.zeros(n, bool)
            border = np.zeros(n + 1, bool)
            for edge in (truth[0], truth[-1], truth[:, 0], truth[:, -1]):
                border[edge] = True
            area = np.bincount(truth.ravel(), minlength=n + 1)[1:]
            normal = kinds == 0
            median = np.median(area[normal & ~border[1:]]) if (normal & ~border[1:]).any() else np.median(area)
            classes = {name: (kinds == kind) & ~border[1:] for name, kind in KIND_CLASSES}
            classes["cut by the border, sliver"] = border[1:] & (area < SLIVER * median)
            classes["cut by the border, larger"] = border[1:] & (area >= SLIVER * median)
            for name, members in classes.items():
                total = counts.setdefault(name, [0, 0])
                total[0] += int(members.sum())
                total[1] += int((members & found).sum())
    return table


def print_kind_table(method: str, table: dict[str, dict[str, list[int]]]) -> None:
    """Recall per object class (rows) and diameter (columns), with the counts, for the synthetic set."""
    diameters = list(table)
    names = list(next(iter(table.values()))) if table else []
    print(f"\n{method}: synthetic recall by object class (found / objects at IoU >= 0.5; off the border unless said)")
    print("  " + f"{'class':28s}" + "".join(f"{d + ' px':>14s}" for d in diameters))
    for name in names:
        cells = []
        for d in diameters:
            n, found = table[d][name]
            cells.append(f"{found / n:.2f} ({n:>4d})" if n else f"{'-':>11s}")
        print("  " + f"{name:28s}" + "".join(f"{c:>14s}" for c in cells))


def baseline_row(baseline: dict | None, method: str, name: str, key: str, row: dict) -> dict | None:
    """The baseline's row for the same method, set and key, if it was measured on the same images."""
    if not baseline:
        return None
    old = baseline.get("results", {}).get(method, {}).get(name, {}).get(key)
    if old is None or (old["n_images"], old["n_true"], old["shape"]) != (row["n_images"], row["n_true"], row["shape"]):
        return None
    return old


def was(value: float, old: dict | None, name: str) -> str:
    """``0.912 (was 0.741)``, or the value alone without a comparable baseline row."""
    return f"{value:.3f} (was {old[name]:.3f})" if old else f"{value:.3f}{'':>12}"


def fmt(value: float | None) -> str:
    """One decimal, or ``n/a`` for None (no estimate)."""
    return "n/a" if value is None else f"{value:.1f}"


def print_table(
    method: str, name: str, rows: dict[str, dict], baseline: dict | None, seconds: float, fixed: bool
) -> None:
    """One set's table: a line per scale or diameter, the baseline's F1 and IoU beside.

    Column ``x job`` is the factor the job recorded (``batchlib_segmentation_scale``): StarDist's image
    rescaling, or for the threshold method its settings' scale (1 / factor times those for 16 px
    nuclei); ``fixed`` (threshold settings given) prints ``-`` there.
    """
    first = {"synthetic": "diameter", "debris": "row"}.get(name, "scale")
    print(f"\n{method}: {SET_TITLES[name]}")
    print(
        f"  {first:>8}  {'images':>13}  {'nuclei':>6}  {'found':>6}  {'d true':>6}  {'d est':>6}  {'x job':>5}  "
        f"{'F1':<18}  {'mean IoU':<18}  {'prec':>5}  {'recall':>6}"
    )
    for key, row in rows.items():
        old = baseline_row(baseline, method, name, key, row)
        images = f"{row['n_images']} x {row['shape'][0]}x{row['shape'][1]}"
        factor = "-" if fixed else f"{row['scale']:.2f}"
        print(
            f"  {key:>8}  {images:>13}  {row['n_true']:>6}  {row['n_pred']:>6}  {row['true_diameter']:>6.1f}  "
            f"{fmt(row['estimated_diameter']):>6}  {factor:>5}  {was(row['f1'], old, 'f1'):<18}  "
            f"{was(row['mean_iou'], old, 'mean_iou'):<18}  {row['precision']:>5.3f}  {row['recall']:>6.3f}"
        )
    n = sum(row["n_images"] for row in rows.values())
    print(f"  time: {seconds:.1f} s for {n} images through the job ({1000 * seconds / n:.0f} ms per image)")


def print_appearance_table(method: str, rows: dict[str, dict], baseline: dict | None) -> None:
    """The synthetic set by appearance seed, all diameters pooled, the baseline's F1 and IoU beside."""
    print(f"\n{method}: synthetic nuclei by appearance (random_appearance seed), all diameters pooled")
    print(
        f"  {'seed':>4}  {'kinds':<45}  {'nuclei':>6}  {'found':>6}  {'F1':<18}  {'mean IoU':<18}  "
        f"{'prec':>5}  {'recall':>6}"
    )
    for key, row in rows.items():
        old = baseline_row(baseline, method, BY_APPEARANCE, key, row)
        print(
            f"  {key:>4}  {describe_appearance(int(key)):<45}  {row['n_true']:>6}  {row['n_pred']:>6}  "
            f"{was(row['f1'], old, 'f1'):<18}  {was(row['mean_iou'], old, 'mean_iou'):<18}  "
            f"{row['precision']:>5.3f}  {row['recall']:>6.3f}"
        )


def target_lines(method: str, results: dict, baseline: dict | None) -> list[tuple[bool | None, str]]:
    """``(passed, text)`` for each target of one method (None: not measured in this run)."""
    lines = []
    for name in ("ndev", "stardist_image"):
        rows = results.get(name)
        if rows is None:
            continue
        label = "held-out ndev frames" if name == "ndev" else "StarDist test image"
        for bar, scales in REAL_TARGETS:
            measured = {f"{s:g}": rows[f"{s:g}"]["f1"] for s in scales if f"{s:g}" in rows}
            where = ", ".join(f"{s:g}" for s in scales)
            if not measured:
                lines.append((None, f"{label}: F1 >= {bar:.2f} at scale {where}: not measured (--quick)"))
                continue
            low = {k: v for k, v in measured.items() if v < bar}
            worst = min(measured, key=measured.get)
            detail = (
                "below at " + ", ".join(f"{k} ({v:.3f})" for k, v in low.items())
                if low
                else f"lowest {measured[worst]:.3f} at {worst}"
            )
            partial = "" if len(measured) == len(scales) else f" (measured at {', '.join(measured)} only)"
            lines.append((not low, f"{label}: F1 >= {bar:.2f} at scale {where}: {detail}{partial}"))
        old = baseline_row(baseline, method, name, "1", rows["1"]) if "1" in rows else None
        if old is None:
            lines.append((None, f"{label}: F1 at scale 1 not below the baseline: no comparable baseline"))
        else:
            new, before = rows["1"], old
            matches = " vs ".join(
                f"{r.get('n_matched', '?')} of {r['n_true']} matched, {r['n_pred']} found" for r in (new, before)
            )
            lines.append(
                (
                    new["f1"] >= before["f1"] - 1e-9,
                    f"{label}: F1 at scale 1 not below the baseline: {new['f1']:.4f} vs {before['f1']:.4f} ({matches})",
                )
            )
    rows = results.get("synthetic")
    if rows is not None:
        low = {k: v["f1"] for k, v in rows.items() if v["f1"] < SYNTHETIC_TARGET}
        worst = min(rows, key=lambda k: rows[k]["f1"])
        detail = (
            "below at " + ", ".join(f"{k} px ({v:.3f})" for k, v in low.items())
            if low
            else f"lowest {rows[worst]['f1']:.3f} at {worst} px"
        )
        partial = "" if len(rows) == len(DIAMETERS) else f" (measured at {', '.join(rows)} px only)"
        lines.append((not low, f"synthetic: F1 >= {SYNTHETIC_TARGET} at every diameter 8-100 px: {detail}{partial}"))
    return lines


def model_summary(folder: str) -> str:
    """The model folder's weights (a short SHA-256, to tell retrained models apart) and its recorded diameter."""
    import hashlib

    weights = os.path.join(folder, "weights_best.h5")
    digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:12] if os.path.isfile(weights) else "?"
    diameter = recorded_diameter(folder)
    records = f"records nucleus diameter {diameter:g} px" if diameter else "records no nucleus diameter: no rescaling"
    return f"weights_best.h5 sha256 {digest}, {records}"


def load_average() -> str:
    """The 1-minute load average, or '?' where the system does not say."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


#: What the numbers depend on, beside the bench script: uncommitted changes to these are noted with the commit.
MEASURED_CODE = (
    "batchlib/jobs/segmentation.py",
    "batchlib/jobs/stardist_model.py",
    "batchlib/nucleus_size.py",
    "batchlib/synthetic_nuclei.py",
    "batchlib/synthetic_geometry.py",
    "batchlib/models",
)


def commit() -> str:
    """The short hash of the repository's HEAD, plus a note if :data:`MEASURED_CODE` differs from it."""
    head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    changed = subprocess.run(
        ["git", "-C", REPO, "status", "--porcelain", "--", *MEASURED_CODE], capture_output=True, text=True
    )
    note = " with uncommitted changes to " + ", ".join(line[3:] for line in changed.stdout.splitlines())
    return (head.stdout.strip() or "?") + (note if changed.stdout.strip() else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="StarDist model folder (default: the shipped model)")
    parser.add_argument("--method", choices=("stardist", "threshold", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="scales 0.5, 1, 2 and 2 images at 8, 24, 64 px")
    parser.add_argument("--as-before", action="store_true", help="the state before size-aware segmentation")
    parser.add_argument("--save", metavar="FILE.json", help="write every number to this file")
    parser.add_argument(
        "--baseline",
        metavar="FILE.json",
        help=f"numbers to print beside (default {os.path.relpath(DEFAULT_BASELINE, REPO)} if it exists, "
        "except with --as-before); 'none' for none",
    )
    args = parser.parse_args()
    if args.as_before and args.model:
        parser.error("--as-before uses the shipped model of commit " + BEFORE_COMMIT + "; leave out --model")
    if args.baseline is None and not args.as_before and os.path.exists(DEFAULT_BASELINE):
        args.baseline = DEFAULT_BASELINE
    baseline = None
    if args.baseline and args.baseline != "none":
        with open(args.baseline, encoding="utf-8") as f:
            baseline = json.load(f)

    started, load_start, measured = time.perf_counter(), load_average(), commit()
    work = tempfile.mkdtemp(prefix="batchlib-bench-quality-")
    try:
        scales = QUICK_SCALES if args.quick else SCALES
        diameters = QUICK_DIAMETERS if args.quick else DIAMETERS
        seeds = appearance_seeds(QUICK_IMAGES_PER_DIAMETER if args.quick else IMAGES_PER_DIAMETER)
        start = time.perf_counter()
        sets = real_sets(scales)
        sets["synthetic"] = synthetic_set(diameters, seeds)
        sets["debris"] = debris_set(seeds)
        prepared = time.perf_counter() - start
        config = "as before size-aware segmentation" if args.as_before else "current"
        print(
            f"commit {measured}, {config}; {os.cpu_count()} cores, load average {load_start} at the start; "
            f"images made in {prepared:.1f} s"
        )
        print("synthetic appearances (random_appearance seeds, the same at every diameter):")
        for seed in seeds:
            print(f"  {seed:>3}: {describe_appearance(seed)}")
        if baseline:
            made = f"commit {baseline.get('commit', '?')}, {baseline.get('config', '?')}"
            print(f"baseline: {os.path.relpath(args.baseline)} ({made})")

        jobs, model_info = {}, None
        if args.method in ("stardist", "both"):
            model = model_as_before(work) if args.as_before else args.model
            if args.as_before:  # the model records no diameter, on purpose: the job's warning says only that
                logging.getLogger("Workflow.SegmentNucleiStarDist").setLevel(logging.ERROR)
            jobs["stardist"] = SegmentNucleiStarDist(model=model)
            described = f"git {BEFORE_COMMIT}" if args.as_before else model or "shipped"
            model_info = f"{described}; {model_summary(model or SHIPPED_MODEL)}"
            print(f"StarDist model: {model_info}")
        if args.method in ("threshold", "both"):
            jobs["threshold"] = SegmentNucleiThreshold(**(BEFORE_THRESHOLD if args.as_before else {}))

        results, seconds = {}, {}
        for method, job in jobs.items():
            if method == "stardist":
                start = time.perf_counter()
                # Loaded once for every set (the job keeps it per process); the first prediction builds the graph.
                job.worker_resource("stardist", job.load_model)
                job.predict(sets["ndev"][0].images[0].astype(np.float32))
                seconds["stardist_model_load"] = time.perf_counter() - start
                print(f"\nStarDist model loaded and warmed up in {seconds['stardist_model_load']:.1f} s")
            results[method] = {}
            for name, rows in sets.items():
                folder = os.path.join(work, f"{method}-{name}")
                os.makedirs(folder)
                labels, attrs, took = segment(job, rows, folder)
                if name == "debris":  # the debris may be found as an object: it is not a nucleus
                    labels = [[without_debris(x) for x in row_labels] for row_labels in labels]
                results[method][name] = {
                    row.key: scores(row.labels, predicted, row_attrs)
                    for row, predicted, row_attrs in zip(rows, labels, attrs)
                }
                seconds[f"{method}_{name}"] = took
                print_table(
                    method, name, results[method][name], baseline, took, fixed=method == "threshold" and args.as_before
                )
                if name == "synthetic":  # the same images again, by appearance: which looks are hard
                    results[method][BY_APPEARANCE] = {
                        str(seed): scores(
                            [row.labels[i] for row in rows],
                            [predicted[i] for predicted in labels],
                            [row_attrs[i] for row_attrs in attrs],
                        )
                        for i, seed in enumerate(seeds)
                    }
                    print_appearance_table(method, results[method][BY_APPEARANCE], baseline)
                    results[method]["synthetic_by_kind"] = recall_by_kind(rows, labels)
                    print_kind_table(method, results[method]["synthetic_by_kind"])
                shutil.rmtree(folder, ignore_errors=True)

        total = time.perf_counter() - started
        print(f"\nsummary against the targets ({config}; commit {measured}):")
        verdicts = []
        for method in results:
            for passed, text in target_lines(method, results[method], baseline):
                verdicts.append(passed)
                print(f"  {'n/a ' if passed is None else ('PASS' if passed else 'FAIL')}  {method}: {text}")
        print(f"  {verdicts.count(True)} passed, {verdicts.count(False)} failed, {verdicts.count(None)} not measured")
        load_end = load_average()
        cpu = time.process_time()
        print(
            f"total {total:.0f} s (images made {prepared:.0f} s), CPU time of this process {cpu:.0f} s; load average "
            f"{load_start} at the start, {load_end} at the end (this run included; {os.cpu_count()} cores)"
        )
        if args.save:
            report = {
                "commit": measured,
                "config": config,
                "command": " ".join(["python", "bench/segmentation_quality.py", *sys.argv[1:]]),
                "model": model_info,
                "threshold_settings": BEFORE_THRESHOLD if args.as_before else "from the nucleus diameter",
                "quick": args.quick,
                "appearance_seeds": seeds,
                "results": results,
                "seconds": {**{k: round(v, 2) for k, v in seconds.items()}, "total": round(total, 1)},
                "load_average": [load_start, load_end],
            }
            with open(args.save, "w", encoding="utf-8") as f:
                json.dump(report, f, indent=1)
                f.write("\n")
            print(f"numbers written to {args.save}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
