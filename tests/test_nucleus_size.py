"""The nucleus-size estimate, and segmentation at the model's size whatever the image's."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from skimage.measure import regionprops
from skimage.transform import rescale

from batchlib import run_workflow
from batchlib.io import open_file, read_image, write_image
from batchlib.nucleus_size import DIAMETER_ATTR, SCALE_ATTR, estimate_diameter, rescale_factor
from batchlib.synthetic import cell_labels, nuclei_labels, render_channels


def equivalent_diameter(labels: np.ndarray) -> float:
    """Median of 2 sqrt(area / pi) over the objects: an independent reference (scikit-image)."""
    return float(np.median([2 * np.sqrt(r.area / np.pi) for r in regionprops(labels)]))


def synthetic(diameter: float, seed: int, shape=(512, 512)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    radius = diameter / 2
    count = int(0.25 * shape[0] * shape[1] / (np.pi * radius**2)) + 4  # about a quarter of the area
    labels = nuclei_labels(shape, count, (0.85 * radius, 1.15 * radius), 0.3, rng)
    return render_channels(labels, cell_labels(labels), rng=rng)["nuclei"], labels


@pytest.mark.parametrize("diameter", [10, 16, 32, 64, 100])
def test_estimate_within_15_percent_of_the_truth(diameter):
    image, labels = synthetic(diameter, seed=diameter)
    truth = equivalent_diameter(labels)
    assert abs(estimate_diameter(image) / truth - 1) < 0.15


def test_estimate_follows_a_rescaled_real_image():
    from stardist.data import test_image_nuclei_2d

    image, labels = test_image_nuclei_2d(return_mask=True)
    for factor in (0.5, 1, 2):
        scaled = rescale(image.astype(np.float32), factor, order=1, anti_aliasing=factor < 1, preserve_range=True)
        truth = equivalent_diameter(rescale(labels, factor, order=0, preserve_range=True, anti_aliasing=False))
        assert abs(estimate_diameter(scaled) / truth - 1) < 0.15


def test_no_nuclei_no_estimate():
    rng = np.random.default_rng(0)
    assert np.isnan(estimate_diameter(np.zeros((128, 128))))
    assert np.isnan(estimate_diameter(np.full((64, 64), np.nan)))
    noise = rng.poisson(100, (256, 256)).astype(np.float32)
    assert np.isnan(estimate_diameter(noise)) or estimate_diameter(noise) < 8  # no nucleus-sized blob in noise
    assert rescale_factor(float("nan"), 16) == 1.0


# ----------------------------------------------------------------------------- the segment jobs
stardist = pytest.importorskip("stardist")


def write_plate(folder, images: dict[str, np.ndarray]) -> None:
    os.makedirs(folder, exist_ok=True)
    for name, image in images.items():
        with open_file(os.path.join(folder, name), "w") as f:
            write_image(f, "nuclei", image)


def labels_of(folder, name):
    with open_file(os.path.join(folder, name), "r") as f:
        return read_image(f, "nucleus_segmentation"), f.attrs[DIAMETER_ATTR], f.attrs[SCALE_ATTR]


def test_stardist_labels_come_back_on_the_original_grid(tmp_path):
    from stardist.matching import matching

    from batchlib.jobs.segmentation import SegmentNucleiStarDist
    from batchlib.jobs.stardist_model import recorded_diameter

    image, truth = synthetic(40, seed=3, shape=(300, 420))  # nuclei about 3x the model's
    blank = np.full((300, 420), 120, np.uint16)
    folder = str(tmp_path / "P")
    write_plate(folder, {"WellC01_PointC01_0000_a.h5": image, "WellC01_PointC01_0001_a.h5": blank})
    result = run_workflow("wf", folder, [SegmentNucleiStarDist()], progress=False)["SegmentNucleiStarDist"]
    assert result.processed == 2
    labels, diameter, scale = labels_of(folder, "WellC01_PointC01_0000_a.h5")
    assert labels.shape == image.shape and labels.dtype == np.uint32
    ids = np.unique(labels[labels > 0])
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
    assert abs(diameter / equivalent_diameter(truth) - 1) < 0.15
    assert scale == pytest.approx(recorded_diameter(None) / diameter)
    assert matching(truth, labels, thresh=0.5).f1 > 0.8
    # An image without nuclei: no estimate, no rescaling, no objects.
    labels, diameter, scale = labels_of(folder, "WellC01_PointC01_0001_a.h5")
    assert np.isnan(diameter) and scale == 1.0 and labels.max() == 0


def test_a_given_diameter_is_used_and_a_changed_one_reruns(tmp_path):
    from batchlib.jobs.segmentation import SegmentNucleiStarDist

    image, _ = synthetic(24, seed=5, shape=(256, 256))
    folder = str(tmp_path / "P")
    write_plate(folder, {"WellC01_PointC01_0000_a.h5": image})
    run_workflow("wf", folder, [SegmentNucleiStarDist(nucleus_diameter=24)], progress=False)
    assert labels_of(folder, "WellC01_PointC01_0000_a.h5")[1] == 24.0
    job = SegmentNucleiStarDist(nucleus_diameter=24)
    assert run_workflow("wf", folder, [job], progress=False)["SegmentNucleiStarDist"].processed == 0
    job = SegmentNucleiStarDist(nucleus_diameter=30)
    assert run_workflow("wf", folder, [job], progress=False)["SegmentNucleiStarDist"].processed == 1
    assert labels_of(folder, "WellC01_PointC01_0000_a.h5")[1] == 30.0


def test_diameter_in_micrometres_needs_the_pixel_size(tmp_path):
    from batchlib.jobs.segmentation import SegmentNucleiThreshold

    image, _ = synthetic(20, seed=6, shape=(128, 128))
    folder = str(tmp_path / "P")
    write_plate(folder, {"WellC01_PointC01_0000_a.h5": image})
    job = SegmentNucleiThreshold(nucleus_diameter_um=13.0)
    result = run_workflow("wf", folder, [job], progress=False, ignore_invalid_inputs=True)
    assert "needs the pixel size" in result["SegmentNucleiThreshold"].invalid_files["WellC01_PointC01_0000_a.h5"]
    job = SegmentNucleiThreshold(nucleus_diameter_um=13.0, pixel_size_um=0.65)
    assert run_workflow("wf", folder, [job], progress=False)["SegmentNucleiThreshold"].processed == 1
    assert labels_of(folder, "WellC01_PointC01_0000_a.h5")[1] == pytest.approx(20.0)


def test_a_model_without_a_recorded_diameter_is_not_rescaled(tmp_path, caplog):
    from batchlib.jobs.segmentation import SegmentNucleiStarDist
    from batchlib.jobs.stardist_model import MODEL_INFO, SHIPPED_MODEL

    model = str(tmp_path / "my_model")
    shutil.copytree(SHIPPED_MODEL, model)
    os.remove(os.path.join(model, MODEL_INFO))
    image, _ = synthetic(40, seed=7, shape=(200, 200))
    folder = str(tmp_path / "P")
    write_plate(folder, {"WellC01_PointC01_0000_a.h5": image})
    with caplog.at_level("WARNING", logger="Workflow"):
        run_workflow("wf", folder, [SegmentNucleiStarDist(model=model)], progress=False)
    assert f"records no nucleus diameter ({MODEL_INFO})" in caplog.text
    assert labels_of(folder, "WellC01_PointC01_0000_a.h5")[2] == 1.0
    # Told the model's diameter, the job rescales.
    with open(os.path.join(model, MODEL_INFO), "w") as f:
        json.dump({"nucleus_diameter": 20.0}, f)
    run_workflow("wf", folder, [SegmentNucleiStarDist(model=model)], progress=False)
    _, diameter, scale = labels_of(folder, "WellC01_PointC01_0000_a.h5")
    assert scale == pytest.approx(20.0 / diameter) and scale < 0.8


def test_threshold_method_follows_the_nucleus_size():
    """Real nuclei (StarDist's labelled test image) twice as large: the settings follow, the fixed ones split."""
    from stardist.data import test_image_nuclei_2d
    from stardist.matching import matching

    from batchlib.jobs.segmentation import threshold_nuclei, threshold_settings

    image, truth = test_image_nuclei_2d(return_mask=True)
    image = rescale(image.astype(np.float32), 2, order=1, preserve_range=True)
    truth = rescale(truth, 2, order=0, preserve_range=True, anti_aliasing=False).astype(np.int32)
    sized = matching(truth, threshold_nuclei(image, *threshold_settings(estimate_diameter(image))), thresh=0.5)
    fixed = matching(truth, threshold_nuclei(image), thresh=0.5)  # settings for 12-16 px nuclei: cut into pieces
    assert sized.f1 > 0.65 and sized.f1 > fixed.f1 + 0.15


def test_image_table_has_the_diameter_and_flags_an_odd_one(tmp_path):
    """Three images of 16 px nuclei and one of 40 px: the table says so, and flags the odd one."""
    import tifffile

    from batchlib.cell_analysis import cell_analysis_main
    from batchlib.demo import raw_file_name
    from batchlib.io import read_plate_table

    raw, folder = tmp_path / "raw", str(tmp_path / "P")
    raw.mkdir()
    for site, diameter in enumerate((16, 16, 16, 40)):
        nuclei, labels = synthetic(diameter, seed=site, shape=(256, 256))
        cells = render_channels(labels, cell_labels(labels), rng=site)
        stack = np.stack([nuclei, cells["cells"], cells["marker"]])
        tifffile.imwrite(raw / raw_file_name("C01", site, site), stack, photometric="minisblack")
    options = ["--folder", folder, "--input-folder", str(raw), "--nuclei-method", "threshold", "--no-progress"]
    assert cell_analysis_main([*options, "--min-cells", "1", "--skip", "export_omezarr,crop,qc"]) == 0
    with open_file(os.path.join(folder, "P_table.hdf5"), "r") as f:
        table = read_plate_table(f, "images")
    assert table["nucleus_diameter"].between(12, 20).tolist() == [True, True, True, False]
    assert table["nucleus_diameter"].iloc[3] > 28
    assert table["odd_nucleus_size"].tolist() == [0, 0, 0, 1] and table["is_outlier"].iloc[3] == 1
    assert table["segmentation_scale"].iloc[3] == pytest.approx(16.0 / table["nucleus_diameter"].iloc[3])
    # A diameter given for the plate: used for every image, nothing odd.
    assert (
        cell_analysis_main(
            [*options, "--min-cells", "1", "--skip", "export_omezarr,crop,qc", "--nucleus-diameter", "20"]
        )
        == 0
    )
    with open_file(os.path.join(folder, "P_table.hdf5"), "r") as f:
        table = read_plate_table(f, "images")
    assert table["nucleus_diameter"].tolist() == [20.0] * 4 and table["odd_nucleus_size"].sum() == 0
