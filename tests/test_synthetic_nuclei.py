"""Synthetic nuclei images: reproducible, valid labels, the size asked for, and every knob does what it says."""

from dataclasses import fields, replace

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import label as connected_regions
from skimage.measure import regionprops
from skimage.segmentation import find_boundaries

from batchlib.synthetic_nuclei import Appearance, nuclei_image, random_appearance

# Noiseless, evenly lit, no haze: differences between images come from the knob under test.
PLAIN = Appearance(noise=False, haze=0.0, gradient=0.0, vignetting=0.0, halo=0.0)


def interior_diameters(labels: np.ndarray) -> np.ndarray:
    """Equivalent diameters of the objects that do not touch the border."""
    h, w = labels.shape
    return np.array(
        [
            2 * np.sqrt(p.area / np.pi)
            for p in regionprops(labels)
            if p.bbox[0] > 0 and p.bbox[1] > 0 and p.bbox[2] < h and p.bbox[3] < w
        ]
    )


def object_means(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    counts = np.bincount(labels.ravel())
    sums = np.bincount(labels.ravel(), weights=image.ravel().astype(float))
    return sums[1:] / counts[1:]


def high_frequency_energy(image: np.ndarray) -> float:
    image = image.astype(float)
    return float((np.diff(image, axis=0) ** 2).mean() + (np.diff(image, axis=1) ** 2).mean())


def test_same_seed_same_image():
    first = nuclei_image((128, 128), 16, rng=7)
    again = nuclei_image((128, 128), 16, rng=np.random.default_rng(7))
    other = nuclei_image((128, 128), 16, rng=8)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])
    assert random_appearance(3) == random_appearance(3) != random_appearance(4)


@pytest.mark.parametrize("diameter", [6, 12, 30, 120])
@pytest.mark.parametrize("seed", range(3))
def test_labels_are_valid(diameter, seed):
    shape = (256, 256) if diameter < 100 else (400, 300)
    image, labels = nuclei_image(shape, diameter, rng=seed)  # a random appearance
    assert image.shape == labels.shape == shape
    assert image.dtype == np.uint16 and labels.dtype == np.uint32
    ids, counts = np.unique(labels, return_counts=True)
    n = int(labels.max())
    np.testing.assert_array_equal(ids, np.arange(n + 1) if 0 in ids else np.arange(1, n + 1))
    assert counts[ids > 0].min(initial=4) >= 4
    # One connected piece per id: labelling connected regions of equal value finds exactly n objects.
    assert connected_regions(labels, background=0, connectivity=1).max() == n


def test_labels_valid_in_dense_clumps():
    appearance = replace(PLAIN, density=0.7, clump_fraction=0.8, irregularity=0.1, kidney_fraction=0.3)
    _, labels = nuclei_image((256, 256), 10, appearance, rng=1)
    n = int(labels.max())
    np.testing.assert_array_equal(np.unique(labels), np.arange(n + 1))
    assert connected_regions(labels, background=0, connectivity=1).max() == n
    assert (labels > 0).mean() > 0.45  # confluent


def test_no_tiny_objects_from_border_cuts_and_fragments():
    tiny = replace(PLAIN, density=0.6, clump_fraction=0.8, apoptotic_fraction=0.5)
    for seed in range(3):
        _, labels = nuclei_image((96, 96), 6, tiny, rng=seed)
        counts = np.bincount(labels.ravel())[1:]
        assert len(counts) > 50 and counts.min() >= 4


def test_touching_nuclei_meet_in_a_darker_seam():
    flat = replace(PLAIN, density=0.5, clump_fraction=0.8, dome=0.0, texture=0.0, nucleoli=0.0, psf_sigma=0.5)
    flat = replace(flat, mitotic_fraction=0.0, mitotic_pair_fraction=0.0, apoptotic_fraction=0.0, brightness_sigma=0)
    image, labels = nuclei_image((256, 256), 30, flat, rng=13)
    contact = np.zeros(labels.shape, bool)
    touch = (labels[:, 1:] != labels[:, :-1]) & (labels[:, 1:] > 0) & (labels[:, :-1] > 0)
    contact[:, 1:] |= touch
    edge = find_boundaries(labels, mode="inner")
    core = (labels > 0) & (ndi.distance_transform_edt(~edge) > 5)
    assert contact.sum() > 50
    assert image[contact].mean() < 0.85 * image[core].mean()


@pytest.mark.parametrize("diameter", [8, 16, 32, 64, 100])
def test_median_diameter_is_the_one_asked_for(diameter):
    side = max(256, 8 * diameter)
    _, labels = nuclei_image((side, side), diameter, Appearance(density=0.3), rng=diameter)
    measured = interior_diameters(labels)
    assert len(measured) >= 10
    assert abs(np.median(measured) / diameter - 1) < 0.15, np.median(measured)


def test_empty_draw_is_background_only():
    for appearance in (Appearance(n_nuclei=0), Appearance(density=0.0), replace(PLAIN, n_nuclei=0)):
        image, labels = nuclei_image((64, 80), 12, appearance, rng=0)
        assert image.shape == (64, 80) and not labels.any()
    # Noiseless and evenly lit: nothing but the background level plus the offset.
    flat = round((PLAIN.background + PLAIN.offset) * 65535)
    np.testing.assert_array_equal(image, np.full((64, 80), flat, np.uint16))


def test_noise_is_poisson_plus_read_noise():
    base = replace(PLAIN, read_noise=0.0, photons=200.0)
    clean, labels = nuclei_image((256, 256), 20, base, rng=2)
    noisy, noisy_labels = nuclei_image((256, 256), 20, replace(base, noise=True), rng=2)
    np.testing.assert_array_equal(labels, noisy_labels)
    # Without noise the photon scale does not matter: the image is the noiseless render.
    np.testing.assert_array_equal(clean, nuclei_image((256, 256), 20, replace(base, photons=5.0), rng=2)[0])
    residual = noisy.astype(float) - clean
    assert abs(residual.mean()) < 0.02 * clean.mean()
    # Shot noise: variance = signal / (photons per full scale), in ADU signal * 65535 * brightness / photons.
    expected = clean.astype(float) * 65535 * base.brightness / base.photons
    bright = clean > np.percentile(clean, 90)
    assert residual[bright].var() == pytest.approx(expected[bright].mean(), rel=0.2)
    with_read = nuclei_image((256, 256), 20, replace(base, noise=True, read_noise=20.0), rng=2)[0]
    assert (with_read.astype(float) - clean).var() > 1.2 * residual.var()


def test_saturation_clips_at_the_dtype_maximum():
    image, labels = nuclei_image((256, 256), 20, replace(PLAIN, saturated_fraction=0.1), rng=3)
    assert (image == 65535).any()
    clipped = np.unique(labels[image == 65535])
    assert 0 < len(clipped[clipped > 0]) <= 0.3 * labels.max()
    plain = nuclei_image((256, 256), 20, PLAIN, rng=3)[0]
    assert plain.max() < 65535


def test_blur_removes_high_frequencies():
    sharp = nuclei_image((256, 256), 16, replace(PLAIN, psf_sigma=0.5, texture=0.0), rng=4)[0]
    blurred = nuclei_image((256, 256), 16, replace(PLAIN, psf_sigma=3.0, texture=0.0), rng=4)[0]
    defocused = nuclei_image((256, 256), 16, replace(PLAIN, psf_sigma=0.5, texture=0.0, defocus=0.25), rng=4)[0]
    assert high_frequency_energy(blurred) < 0.5 * high_frequency_energy(sharp)
    assert high_frequency_energy(defocused) < 0.5 * high_frequency_energy(sharp)


def test_denser_means_more_objects():
    sparse = nuclei_image((256, 256), 16, replace(PLAIN, density=0.05), rng=5)[1]
    dense = nuclei_image((256, 256), 16, replace(PLAIN, density=0.5), rng=5)[1]
    assert dense.max() > 4 * sparse.max()
    assert (dense > 0).mean() > 4 * (sparse > 0).mean()


def touching_pairs(labels: np.ndarray) -> int:
    pairs = set()
    for a, b in ((labels[1:], labels[:-1]), (labels[:, 1:], labels[:, :-1])):
        touch = (a != b) & (a > 0) & (b > 0)
        pairs |= {(min(x, y), max(x, y)) for x, y in zip(a[touch].tolist(), b[touch].tolist())}
    return len(pairs)


def test_clumps_touch():
    apart = nuclei_image((256, 256), 16, replace(PLAIN, density=0.15, clump_fraction=0.0), rng=6)[1]
    clumped = nuclei_image((256, 256), 16, replace(PLAIN, density=0.15, clump_fraction=0.8), rng=6)[1]
    assert touching_pairs(clumped) > 2 * touching_pairs(apart) + 5


def test_mitotic_nuclei_are_smaller_and_brighter():
    interphase = replace(PLAIN, mitotic_fraction=0.0, mitotic_pair_fraction=0.0, apoptotic_fraction=0.0)
    image, labels = nuclei_image((256, 256), 24, interphase, rng=7)
    m_image, m_labels = nuclei_image((256, 256), 24, replace(interphase, mitotic_fraction=1.0), rng=7)
    assert np.median(np.bincount(m_labels.ravel())[1:]) < 0.6 * np.median(np.bincount(labels.ravel())[1:])
    assert np.median(object_means(m_image, m_labels)) > 1.5 * np.median(object_means(image, labels))


def test_mitotic_pairs_and_apoptotic_fragments_are_separate_objects():
    sparse = replace(PLAIN, mitotic_fraction=0.0, apoptotic_fraction=0.0, clump_fraction=0.0)
    _, pairs = nuclei_image((512, 512), 30, replace(sparse, mitotic_pair_fraction=1.0, n_nuclei=10), rng=8)
    assert 16 <= pairs.max() <= 20  # two objects per pair (a few cut by the border may be lost)
    _, fragments = nuclei_image((512, 512), 30, replace(sparse, apoptotic_fraction=1.0, n_nuclei=10), rng=8)
    assert fragments.max() >= 30  # 3-8 fragments per nucleus, one object each
    assert np.median(interior_diameters(fragments)) < 0.4 * 30


def test_kinds_name_each_object():
    from batchlib.synthetic_geometry import APOPTOTIC, MITOTIC, NORMAL, PAIR

    mixed = replace(PLAIN, mitotic_fraction=0.2, mitotic_pair_fraction=0.1, apoptotic_fraction=0.1, n_nuclei=60)
    image, labels, kinds = nuclei_image((512, 512), 30, mixed, rng=9, return_kinds=True)
    again, same_labels = nuclei_image((512, 512), 30, mixed, rng=9)
    np.testing.assert_array_equal(image, again)
    np.testing.assert_array_equal(labels, same_labels)
    assert len(kinds) == labels.max() and set(kinds.tolist()) == {NORMAL, MITOTIC, PAIR, APOPTOTIC}
    area = np.bincount(labels.ravel())[1:]
    # Fragments are the smallest objects, interphase nuclei the largest (medians).
    assert np.median(area[kinds == APOPTOTIC]) < 0.2 * np.median(area[kinds == NORMAL])
    assert np.median(area[kinds == MITOTIC]) < 0.6 * np.median(area[kinds == NORMAL])


def test_shape_knobs():
    def median_prop(appearance, name):
        _, labels = nuclei_image((384, 384), 32, replace(PLAIN, density=0.15, clump_fraction=0.0, **appearance), rng=9)
        return np.median([getattr(p, name) for p in regionprops(labels)])

    round_ = {"elongation": 0.0, "irregularity": 0.0, "kidney_fraction": 0.0, "mitotic_fraction": 0.0}
    assert median_prop(round_, "eccentricity") < 0.3
    assert median_prop({**round_, "elongation": 1.0}, "eccentricity") > 0.7
    assert median_prop(round_, "solidity") > 0.97
    assert median_prop({**round_, "kidney_fraction": 1.0}, "solidity") < 0.95
    assert median_prop({**round_, "irregularity": 0.15}, "solidity") < median_prop(round_, "solidity") - 0.02


def test_texture_nucleoli_and_rim():
    smooth = replace(PLAIN, texture=0.0, nucleoli=0.0, dome=0.0, psf_sigma=0.5, mitotic_fraction=0.0)
    image, labels = nuclei_image((256, 256), 60, smooth, rng=10)
    edge = find_boundaries(labels, mode="inner")
    core = (labels > 0) & (ndi.distance_transform_edt(~edge) > 4)

    def spread(img):  # relative intensity spread inside the objects, away from their edges
        values = img[core].astype(float)
        return values.std() / values.mean()

    def edge_to_core(img):
        return img[edge].mean() / img[core].mean()

    base = spread(image)
    assert spread(nuclei_image((256, 256), 60, replace(smooth, texture=0.4), rng=10)[0]) > base + 0.1
    assert spread(nuclei_image((256, 256), 60, replace(smooth, nucleoli=3.0), rng=10)[0]) > base + 0.03
    rim = nuclei_image((256, 256), 60, replace(smooth, rim=1.0), rng=10)[0]
    assert edge_to_core(rim) > 1.3 * edge_to_core(image)
    dome = nuclei_image((256, 256), 60, replace(smooth, dome=1.0), rng=10)[0]
    assert edge_to_core(dome) < 0.8 * edge_to_core(image)


def test_dtypes_and_gamma():
    image, labels = nuclei_image((128, 128), 16, PLAIN, rng=11)
    small, small_labels = nuclei_image((128, 128), 16, replace(PLAIN, dtype="uint8"), rng=11)
    real, _ = nuclei_image((128, 128), 16, replace(PLAIN, dtype="float32"), rng=11)
    np.testing.assert_array_equal(labels, small_labels)
    assert small.dtype == np.uint8 and real.dtype == np.float32
    assert real.min() >= 0 and real.max() <= 1
    np.testing.assert_allclose(real * 65535, image, atol=0.51)
    np.testing.assert_allclose(real * 255, small, atol=0.51)
    gamma = nuclei_image((128, 128), 16, replace(PLAIN, gamma=0.6), rng=11)[0]
    assert not np.array_equal(gamma, image)
    with pytest.raises(ValueError, match="dtype"):
        nuclei_image((32, 32), 8, replace(PLAIN, dtype="int8"), rng=0)


# A value other than the default for every knob, and whether it moves the objects (geometry) or only the pixels.
CHANGES = {
    "size_sigma": (0.4, True),
    "elongation": (1.0, True),
    "irregularity": (0.15, True),
    "kidney_fraction": (0.8, True),
    "mitotic_fraction": (0.3, True),
    "mitotic_pair_fraction": (0.3, True),
    "apoptotic_fraction": (0.3, True),
    "density": (0.5, True),
    "n_nuclei": (5, True),
    "clump_fraction": (0.9, True),
    "brightness": (0.3, False),
    "brightness_sigma": (0.6, False),
    "saturated_fraction": (0.2, False),
    "dome": (0.0, False),
    "rim": (0.8, False),
    "texture": (0.5, False),
    "texture_scale": (0.2, False),
    "nucleoli": (3.0, False),
    "psf_sigma": (2.5, False),
    "defocus": (0.2, False),
    "halo": (0.3, False),
    "background": (0.05, False),
    "haze": (0.5, False),
    "gradient": (0.5, False),
    "vignetting": (0.5, False),
    "noise": (False, False),
    "photons": (20.0, False),
    "read_noise": (30.0, False),
    "offset": (0.02, False),
    "gamma": (0.7, False),
    "dtype": ("uint8", False),
}


def test_every_knob_is_tested():
    assert set(CHANGES) == {f.name for f in fields(Appearance)}


@pytest.mark.parametrize("knob", sorted(CHANGES))
def test_every_knob_changes_the_image(knob):
    value, moves_objects = CHANGES[knob]
    image, labels = nuclei_image((128, 128), 16, Appearance(), rng=12)
    changed, changed_labels = nuclei_image((128, 128), 16, replace(Appearance(), **{knob: value}), rng=12)
    assert not np.array_equal(changed.astype(float), image.astype(float))
    # Knobs of intensity, optics and camera leave the ground truth as it was.
    assert np.array_equal(changed_labels, labels) != moves_objects
