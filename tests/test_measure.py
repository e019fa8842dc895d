"""Measurements equal scikit-image regionprops_table (and np.percentile per object)."""

import numpy as np
import pytest
from skimage.measure import regionprops_table

from batchlib.measure import measure_objects
from batchlib.synthetic import synthetic_site


@pytest.fixture(scope="module")
def site():
    channels, nuclei, cells = synthetic_site((300, 300), n_nuclei=40, seed=11)
    return channels, nuclei, cells


def test_matches_regionprops(site):
    channels, nuclei, _ = site
    ours = measure_objects(nuclei, {"DAPI": channels["nuclei"], "GFP": channels["marker"]}, "Nuclei")
    props = regionprops_table(
        nuclei,
        intensity_image=np.stack([channels["nuclei"], channels["marker"]], -1),
        properties=(
            "label",
            "area",
            "centroid",
            "bbox",
            "eccentricity",
            "solidity",
            "perimeter",
            "intensity_mean",
            "intensity_min",
            "intensity_max",
            "intensity_std",
        ),
    )
    np.testing.assert_array_equal(ours["label_id"], props["label"])
    pairs = {
        "Nuclei_AreaShape_Area": "area",
        "Nuclei_AreaShape_Center_Y": "centroid-0",
        "Nuclei_AreaShape_Center_X": "centroid-1",
        "Nuclei_AreaShape_BoundingBoxMinimum_Y": "bbox-0",
        "Nuclei_AreaShape_BoundingBoxMinimum_X": "bbox-1",
        "Nuclei_AreaShape_BoundingBoxMaximum_Y": "bbox-2",
        "Nuclei_AreaShape_BoundingBoxMaximum_X": "bbox-3",
        "Nuclei_AreaShape_Eccentricity": "eccentricity",
        "Nuclei_AreaShape_Solidity": "solidity",
        "Nuclei_AreaShape_Perimeter": "perimeter",
    }
    for channel, index in (("DAPI", 0), ("GFP", 1)):
        for ours_name, theirs in (
            ("MeanIntensity", "intensity_mean"),
            ("MinIntensity", "intensity_min"),
            ("MaxIntensity", "intensity_max"),
            ("StdIntensity", "intensity_std"),
        ):
            pairs[f"Nuclei_Intensity_{ours_name}_{channel}"] = f"{theirs}-{index}"
    for ours_name, theirs in pairs.items():
        np.testing.assert_allclose(ours[ours_name], props[theirs], rtol=1e-6, atol=1e-9, err_msg=ours_name)


def test_sum_median_quartiles_match_numpy(site):
    channels, _, cells = site
    ours = measure_objects(cells, {"GFP": channels["marker"]}, "Cells")
    image = channels["marker"]
    for row in ours.itertuples(index=False):
        values = image[cells == row.label_id].astype(np.float64)
        assert row.Cells_Intensity_IntegratedIntensity_GFP == values.sum()
        expected = np.percentile(values, [25, 50, 75])
        got = [
            row.Cells_Intensity_LowerQuartileIntensity_GFP,
            row.Cells_Intensity_MedianIntensity_GFP,
            row.Cells_Intensity_UpperQuartileIntensity_GFP,
        ]
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_edge_cases():
    labels = np.zeros((6, 6), np.uint32)
    labels[0, 0] = 5  # one pixel at the border
    labels[2:6, 5] = 70000  # a line at the edge, id beyond uint16
    image = np.arange(36, dtype=np.float32).reshape(6, 6)
    ours = measure_objects(labels, {"X": image}, "Nuclei")
    props = regionprops_table(
        labels, intensity_image=image, properties=("label", "area", "perimeter", "eccentricity", "intensity_mean")
    )
    np.testing.assert_array_equal(ours["label_id"], [5, 70000])
    np.testing.assert_allclose(ours["Nuclei_AreaShape_Perimeter"], props["perimeter"])
    np.testing.assert_allclose(ours["Nuclei_AreaShape_Eccentricity"], props["eccentricity"])
    np.testing.assert_allclose(ours["Nuclei_Intensity_MeanIntensity_X"], props["intensity_mean"])
    empty = measure_objects(np.zeros((4, 4), np.uint32), {"X": np.ones((4, 4))}, "Cells")
    assert len(empty) == 0 and "Cells_AreaShape_Area" in empty.columns
    # An image without objects gives the columns and types of one with objects (the plate's tables concatenate).
    some = measure_objects(labels[:4, :4], {"X": np.ones((4, 4))}, "Cells")
    assert empty.dtypes.to_dict() == some.dtypes.to_dict()


def test_convex_hull_areas_equal_scikit_image_on_irregular_shapes():
    from skimage.measure import label
    from skimage.morphology import convex_hull_image

    from batchlib.measure import ObjectPixels, convex_areas

    rng = np.random.default_rng(1)
    shapes = [label(rng.random((60, 60)) > 0.55, connectivity=1) for _ in range(5)]
    lines = np.zeros((20, 20), np.int32)
    for k in range(10):
        lines[k, k] = 1  # a diagonal line
    lines[0, 19] = 2  # one pixel in a corner
    lines[15:20, 0:3] = 3
    lines[12, 5:15] = 4
    for labels in [*shapes, lines]:
        pixels = ObjectPixels(labels)
        expected = []
        for object_id in pixels.ids:
            ys, xs = np.nonzero(labels == object_id)
            crop = labels[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] == object_id
            expected.append(np.count_nonzero(convex_hull_image(crop)))
        np.testing.assert_array_equal(convex_areas(pixels, labels.shape[1]), expected)


def test_objects_on_opposite_edges_and_hulls_from_border_pixels():
    from batchlib.measure import ObjectPixels, border_mask, convex_areas

    labels = np.zeros((12, 10), np.uint32)
    labels[3:6, 0:3] = 1
    labels[4:7, 7:10] = 1  # object 1 touches the left and right edges: no flat wrap-around shortcut
    labels[0:3, 4:6] = 2  # top edge
    labels[9:12, 3:9] = 3  # bottom edge
    labels[10, 5] = 0  # a hole
    image = np.arange(labels.size, dtype=np.float64).reshape(labels.shape)
    ours = measure_objects(labels, {"X": image}, "Nuclei")
    props = regionprops_table(labels, properties=("label", "perimeter", "solidity"))
    np.testing.assert_allclose(ours["Nuclei_AreaShape_Perimeter"], props["perimeter"], rtol=1e-6)
    np.testing.assert_allclose(ours["Nuclei_AreaShape_Solidity"], props["solidity"], rtol=1e-6)
    safe = labels.copy()
    safe[4:7, 9] = 0  # now no object touches both side edges
    pixels = ObjectPixels(safe)
    border = border_mask(safe, pixels)
    assert border.sum() < len(border)
    np.testing.assert_array_equal(convex_areas(pixels, 10, border), convex_areas(pixels, 10))
    props = regionprops_table(safe, properties=("label", "perimeter"))
    np.testing.assert_allclose(measure_objects(safe, {}, "Nuclei")["Nuclei_AreaShape_Perimeter"], props["perimeter"])
