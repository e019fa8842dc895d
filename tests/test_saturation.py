"""Saturated debris must not blind the segmentation: the plateau is tamed before intensities are scaled."""

import numpy as np
import pytest
from stardist.matching import matching

from batchlib.jobs.segmentation import SegmentNucleiStarDist, seeded_cells, threshold_nuclei, threshold_settings
from batchlib.nucleus_size import estimate_diameter
from batchlib.saturation import saturated_level, tame_saturation
from batchlib.synthetic import synthetic_site

DEBRIS = (slice(100, 150), slice(300, 350))  # 50 x 50 pixels: 1% of a 512 x 512 image


def site_with_debris(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic nuclei image, the same with a saturated square, and the nuclei labels outside the square."""
    channels, labels, _ = synthetic_site((512, 512), n_nuclei=64, seed=seed)
    clean = channels["nuclei"]
    debris = clean.copy()
    debris[DEBRIS] = np.iinfo(clean.dtype).max
    truth = np.asarray(labels["nuclei"] if isinstance(labels, dict) else labels).copy()
    truth[DEBRIS] = 0
    return clean, debris, truth


def f1_outside_debris(truth: np.ndarray, labels: np.ndarray) -> float:
    labels = labels.copy()
    labels[DEBRIS] = 0  # the debris may well be an object: it is not a nucleus of the ground truth
    return matching(truth, labels, thresh=0.5).f1


# ----------------------------------------------------------------------------- the functions
def test_a_plateau_at_the_maximum_is_saturation_a_single_brightest_pixel_is_not():
    x = np.arange(10_000, dtype=np.uint16).reshape(100, 100)
    assert saturated_level(x) is None and tame_saturation(x) is x  # no copy
    x[:5, :5] = 65535
    assert saturated_level(x) == 65535
    x[:5, :5] = 9999  # 25 pixels at the image's own maximum (an older camera's ceiling)
    assert saturated_level(x) == 9999


def test_tame_lowers_the_plateau_to_the_high_percentile_of_the_other_pixels():
    rng = np.random.default_rng(0)
    x = rng.integers(100, 3000, (200, 200)).astype(np.uint16)
    x[:40, :40] = 65535
    tamed = tame_saturation(x)
    others = x[x < 65535]
    assert tamed.dtype == x.dtype and (x == 65535).sum() == 1600
    np.testing.assert_array_equal(tamed[:40, :40], int(np.percentile(others, 99.8)))
    np.testing.assert_array_equal(tamed[x < 65535], others)  # the rest untouched
    assert x.max() == 65535  # the input is not modified


def test_tame_keeps_nan_pixels_and_leaves_mask_like_images_alone():
    x = np.linspace(0, 1, 400, dtype=np.float32).reshape(20, 20)
    x[0, :] = np.nan
    x[5:10, 5:10] = 7.0
    tamed = tame_saturation(x)
    assert np.isnan(tamed[0]).all() and float(np.nanmax(tamed)) <= 1.0
    mask_like = np.zeros((20, 20))
    mask_like[2:8, 2:8] = 3.0
    assert tame_saturation(mask_like) is mask_like  # nothing else has contrast: the objects stay


# ----------------------------------------------------------------------------- what it is for
@pytest.mark.parametrize("seed", [0, 1])
def test_nucleus_diameter_estimate_ignores_saturated_debris(seed):
    clean, debris, _ = site_with_debris(seed)
    assert estimate_diameter(debris) == pytest.approx(estimate_diameter(clean), rel=0.05)


def test_stardist_finds_the_nuclei_beside_saturated_debris():
    job = SegmentNucleiStarDist()
    clean, debris, truth = site_with_debris(0)
    labels, _ = job.predict(debris, estimate_diameter(debris))
    clean_labels, _ = job.predict(clean, estimate_diameter(clean))
    assert f1_outside_debris(truth, clean_labels) > 0.95
    assert f1_outside_debris(truth, labels) > 0.95  # without taming: 0 (every nucleus scaled to near zero)


def test_threshold_method_finds_the_nuclei_beside_saturated_debris():
    _, debris, truth = site_with_debris(0)
    labels = threshold_nuclei(debris, *threshold_settings(estimate_diameter(debris)))
    assert f1_outside_debris(truth, labels) > 0.85


def test_cells_grow_beside_saturated_debris_in_the_cell_channel():
    channels, nuclei, cells = synthetic_site((512, 512), n_nuclei=64, seed=0)
    image = channels["cells"].copy()
    image[DEBRIS] = 65535
    found = seeded_cells(nuclei, image)
    for labels in (cells, found):  # cells touching the debris are out of both
        touching = np.unique(labels[DEBRIS])
        labels[np.isin(labels, touching[touching > 0])] = 0
    clean = matching(cells, seeded_cells(nuclei, channels["cells"]), thresh=0.5).f1
    assert matching(cells, found, thresh=0.5).f1 > clean - 0.05  # without taming: 0 (Otsu's threshold at the debris)
