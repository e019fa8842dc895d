"""NaN and infinite pixels: counted per image, left out of every number, a mostly-NaN image refused."""

from __future__ import annotations

import json
import os

import numpy as np
import tifffile

from batchlib.cell_analysis import cell_analysis_main
from batchlib.demo import raw_file_name
from batchlib.io import image_attrs, open_file, read_plate_table, read_table
from batchlib.jobs.aggregate import focus_score
from batchlib.jobs.segmentation import threshold_nuclei, threshold_settings
from batchlib.measure import measure_objects
from batchlib.synthetic import synthetic_site

SHAPE = (128, 128)


def float_stack(seed: int) -> np.ndarray:
    channels, _, _ = synthetic_site(SHAPE, 12, 1.0, seed=seed)
    return np.stack([channels["nuclei"], channels["cells"], channels["marker"]]).astype(np.float32)


def test_nonfinite_pixels_are_counted_and_left_out(tmp_path):
    raw, folder = tmp_path / "raw", str(tmp_path / "P")
    raw.mkdir()
    clean = {site: float_stack(site) for site in range(4)}
    images = {site: stack.copy() for site, stack in clean.items()}
    images[0][0, 10:30, 10:30] = np.nan  # a NaN patch in the nuclei channel
    images[1][0, 64, 64] = np.inf  # one infinite pixel
    images[2][:, :100, :] = np.nan  # mostly NaN: 3 x 100 x 128 of 3 x 128 x 128 pixels
    names = {site: raw_file_name("C01", site, site) for site in images}
    for site, stack in images.items():
        tifffile.imwrite(raw / names[site], stack, photometric="minisblack", metadata={"axes": "CYX"})
    options = ["--folder", folder, "--input-folder", str(raw), "--nuclei-method", "threshold", "--no-progress"]

    assert cell_analysis_main([*options, "--min-cells", "1", "--ignore-invalid-inputs"]) == 0
    with open(os.path.join(folder, "batchlib", "ImportImages.status")) as f:
        invalid = json.load(f)["invalid"]
    assert list(invalid) == [names[2]]
    assert (
        "38400 of its 49152 pixels (78%) are NaN or infinite, more than max_nonfinite_fraction=0.5"
        in (invalid[names[2]])
    )
    with open(os.path.join(folder, "batchlib", "CellAnalysisWorkflow.log"), encoding="utf-8") as f:
        log = f.read()
    assert f"ImportImages: {names[0]}: 400 of 49152 pixels are NaN or infinite; they are left out" in log
    assert f"ImportImages: {names[1]}: 1 of 49152 pixels are NaN or infinite" in log
    assert "RuntimeWarning" not in log  # no stray numpy warning about NaN anywhere in the workflow

    with open_file(os.path.join(folder, "P_table.hdf5"), "r") as f:
        table = read_plate_table(f, "images").set_index("image_name")
    stems = {site: os.path.splitext(name)[0] for site, name in names.items()}
    assert table.loc[[stems[0], stems[1], stems[3]], "n_nonfinite_pixels"].tolist() == [400, 1, 0]
    assert np.isfinite(table["focus_score"]).all()

    container = os.path.join(folder, stems[0] + ".h5")
    with open_file(container, "r") as f:
        limits = image_attrs(f, "nuclei")["ContrastLimits"]
        nuclei = read_table(f, "nucleus_segmentation/default")
        labels = f["nucleus_segmentation/s0"][...]
        diameter = float(f.attrs["batchlib_nucleus_diameter"])
    finite = images[0][0][np.isfinite(images[0][0])]
    np.testing.assert_allclose(limits, np.percentile(finite, [1, 99]))
    # The patch does not wipe out the image's nuclei: every nucleus of the clean image (segmented with the
    # settings the job chose for this image's nucleus size) clear of the patch is found again, unchanged.
    assert np.isfinite(diameter)
    sigma, min_size, min_distance = threshold_settings(diameter)
    reference = threshold_nuclei(clean[0][0], sigma=sigma, min_size=min_size, min_distance=min_distance)
    near_patch = np.zeros(SHAPE, bool)
    near_patch[5:35, 5:35] = True
    clear = [i for i in range(1, reference.max() + 1) if not (near_patch & (reference == i)).any()]
    assert len(clear) >= reference.max() - 3
    for i in clear:
        found = np.bincount(labels[reference == i]).argmax()
        overlap = (labels == found) & (reference == i)
        assert found > 0 and overlap.sum() >= 0.9 * max((labels == found).sum(), (reference == i).sum())
    # Intensities are those of the finite pixels of each nucleus (nanmean: an independent reference).
    means = [np.nanmean(images[0][0][labels == i]) for i in nuclei["label_id"]]
    np.testing.assert_allclose(nuclei["Nuclei_Intensity_MeanIntensity_nuclei"], means, rtol=1e-5)
    assert np.isfinite(nuclei.drop(columns="label_id").to_numpy()).all()


def test_intensity_features_of_an_object_partly_nan():
    labels = np.array([[1, 1, 2], [1, 0, 2]])
    image = np.array([[1.0, np.nan, np.nan], [4.0, 99.0, np.inf]])
    table = measure_objects(labels, {"X": image}, "N")
    assert table["N_Intensity_MeanIntensity_X"].tolist()[0] == 2.5  # (1 + 4) / 2: the NaN left out
    assert table["N_AreaShape_Area"].tolist() == [3.0, 2.0]  # shape counts every pixel
    assert np.isnan(table["N_Intensity_MedianIntensity_X"].tolist()[1])  # no finite pixel at all


def test_focus_score_ignores_an_infinite_pixel():
    image = float_stack(3)[0].astype(np.float64)
    with_inf = image.copy()
    with_inf[64, 64] = np.inf
    score, reference = focus_score(with_inf), focus_score(image)
    assert np.isfinite(score) and abs(score - reference) < 0.05 * reference
