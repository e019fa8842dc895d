"""A few far brighter nuclei must not set the intensity scale (batchlib.brightness)."""

import os

import numpy as np
import pytest

from batchlib.brightness import CEILING, intensity_ceiling, typical_nucleus_level
from batchlib.synthetic import brighten_nuclei, synthetic_site


def disks(bright: int, level: float = 1000.0, factor: float = 20.0, seed: int = 0) -> np.ndarray:
    """36 disks of 17 px on a noisy background of 100, the first ``bright`` of them ``factor`` x brighter."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:256, :256]
    image = np.full((256, 256), 100.0)
    centres = [(y, x) for y in range(24, 256, 40) for x in range(24, 256, 40)]
    for i, (y, x) in enumerate(centres):
        image[(yy - y) ** 2 + (xx - x) ** 2 <= 8**2] = level * (factor if i < bright else 1.0)
    return image + rng.normal(0, 10, image.shape)


def brightened(factor: float, seed: int, n_bright: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic 512 x 512 nuclei image with its first ``n_bright`` nuclei ``factor`` times brighter."""
    channels, labels, _ = synthetic_site((512, 512), n_nuclei=64, seed=seed)
    return brighten_nuclei(channels["nuclei"], labels, factor, n_bright), labels


def test_the_typical_level_ignores_a_few_far_brighter_nuclei():
    plain = typical_nucleus_level(disks(0), 17.0)
    assert plain == pytest.approx(typical_nucleus_level(disks(5), 17.0), rel=0.05)
    assert 700 < plain < 1000  # the disks' level, smoothed at their scale


def test_no_level_without_nuclei():
    rng = np.random.default_rng(1)
    assert typical_nucleus_level(np.full((128, 128), 50.0), 12.0) is None
    assert typical_nucleus_level(rng.poisson(100, (256, 256)).astype(float), 12.0) is None  # noise only
    assert typical_nucleus_level(disks(0), float("nan")) is None
    image = disks(0)
    image[:40] = np.nan  # NaN pixels count as background
    assert typical_nucleus_level(image, 17.0) == pytest.approx(typical_nucleus_level(disks(0), 17.0), rel=0.05)


def test_the_ceiling_binds_only_above_a_few_typical_nuclei():
    image = disks(5)
    low, high = np.percentile(image, [1, 99.8])
    typical = typical_nucleus_level(image, 17.0)
    assert high > low + CEILING * (typical - low)  # the bright disks set the 99.8th percentile
    assert intensity_ceiling(image, low, high, 17.0) == pytest.approx(low + CEILING * (typical - low))
    low, high = np.percentile(disks(0), [1, 99.8])
    assert intensity_ceiling(disks(0), low, high, 17.0) == high  # nothing to lower


def test_real_frames_are_scaled_as_before():
    """On the ndev frames (no outliers) the ceiling does not bind: the model's input is unchanged."""
    import ndev_sampledata
    import tifffile

    from batchlib.jobs.stardist_model import normalize
    from batchlib.nucleus_size import estimate_diameter

    path = os.path.join(os.path.dirname(ndev_sampledata.__file__), "samples", "scratch-assay-labeled-10T-2Ch.tiff")
    for frame in tifffile.imread(path)[0][:10:3]:
        np.testing.assert_array_equal(normalize(frame, diameter=estimate_diameter(frame)), normalize(frame))


def test_stardist_finds_the_nuclei_beside_far_brighter_ones():
    """5 of 64 nuclei 20x brighter: scaled to the 99.8th percentile, the others are too dim for the model."""
    pytest.importorskip("stardist")
    from stardist.matching import matching_dataset

    from batchlib.jobs.segmentation import SegmentNucleiStarDist
    from batchlib.jobs.stardist_model import prepare_for_model
    from batchlib.nucleus_size import estimate_diameter

    job = SegmentNucleiStarDist()
    truth, ours, percentile_only = [], [], []
    for seed in range(3):
        image, labels = brightened(20.0, seed)
        diameter = estimate_diameter(image)
        labels_now, scale = job.predict(image, diameter)
        truth.append(labels)
        ours.append(labels_now)
        percentile_only.append(job._predict_prepared(prepare_for_model(image, scale), scale))
    f1 = matching_dataset(truth, ours, thresh=0.5, show_progress=False).f1
    f1_before = matching_dataset(truth, percentile_only, thresh=0.5, show_progress=False).f1
    assert f1 >= 0.8 and f1_before < 0.7, (f1, f1_before)
