"""Illumination correction: the estimate against a known field, corrected cell intensities, incremental re-estimates."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from batchlib import run_workflow
from batchlib.illumination import apply_flat_field, estimate_flat_field
from batchlib.io import open_file, read_table, write_image
from batchlib.io.stamps import write_key_stamps
from batchlib.jobs.illumination import EstimateIllumination, read_provenance
from batchlib.jobs.measure import MeasureObjects
from batchlib.synthetic import cell_labels, nuclei_labels

SHAPE = (256, 256)


def vignetting(shape=SHAPE, fall_off=0.4):
    """A field falling off radially to ``1 - fall_off`` at the corners (1 at the centre)."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    r2 = ((yy + 0.5) / shape[0] * 2 - 1) ** 2 + ((xx + 0.5) / shape[1] * 2 - 1) ** 2
    return 1 - fall_off * r2 / 2


def site(seed: int, field: np.ndarray):
    """Cells on a uniform background, lit by ``field``: (labels, the image as flat light shows it, the image)."""
    rng = np.random.default_rng(seed)
    nuclei = nuclei_labels(SHAPE, 25, rng=rng)
    cells = cell_labels(nuclei)
    level = np.concatenate([[0.0], rng.uniform(300, 1500, int(cells.max()))])
    flat = 100 + ndi.gaussian_filter(level[cells], 1.0)
    return nuclei, cells, flat, rng.poisson(flat * field).astype(np.uint16)


def test_field_from_24_images_is_within_5_percent_of_the_truth():
    field = vignetting()
    estimate = estimate_flat_field([site(i, field)[3] for i in range(24)])
    truth = field / field.mean()
    assert np.abs(estimate / truth - 1).max() < 0.05


def test_a_flat_plate_gives_a_flat_field():
    estimate = estimate_flat_field([site(i, np.ones(SHAPE))[3] for i in range(24)])
    assert np.abs(estimate - 1).max() < 0.02


def write_plate(folder, seeds, field):
    """Containers with a marker lit by ``field``, stamped as an import would; (seed, flat image, cells) by name."""
    flats = {}
    for seed in seeds:
        nuclei, cells, flat, image = site(seed, field)
        name = f"WellA01_PointA01_{seed:04d}_plate.h5"
        with open_file(folder / name, "a") as f:
            write_image(f, "marker", image)
            write_image(f, "nucleus_segmentation", nuclei, is_label=True)
            write_image(f, "cell_segmentation", cells, is_label=True)
            write_key_stamps(
                f, {key: f"made-{seed}" for key in ("marker", "nucleus_segmentation", "cell_segmentation")}
            )
        flats[name] = (seed, flat, cells)
    return flats


def jobs():
    return [
        EstimateIllumination(["marker"]),
        MeasureObjects(["marker"], illumination="{plate}_illumination.hdf5", solidity=False),
    ]


def cell_means(folder, name):
    with open_file(folder / name, "r") as f:
        table = read_table(f, "cell_segmentation/default")
    return table.set_index("label_id")["Cells_Intensity_MeanIntensity_marker"]


def test_corrected_cell_intensities_are_within_3_percent_of_flat_light(tmp_path):
    field = vignetting()
    flats = write_plate(tmp_path, range(24), field)
    results = run_workflow("W", tmp_path, jobs(), progress=False)
    assert results["MeasureObjects"].processed == 24
    worst_corrected, worst_raw = 0.0, 0.0
    for name, (seed, flat, cells) in flats.items():
        ids = np.unique(cells)[1:]
        truth = ndi.mean(flat, cells, ids)
        measured = cell_means(tmp_path, name).loc[ids].to_numpy()
        # The field averages 1, so corrected intensities are on the scale of the field's mean light.
        worst_corrected = max(worst_corrected, np.abs(measured / (truth * field.mean()) - 1).max())
        raw = ndi.mean(site(seed, field)[3].astype(float), cells, ids)
        worst_raw = max(worst_raw, np.abs(raw / truth - 1).max())
    assert worst_corrected < 0.03 and worst_raw > 0.3  # up to 40% off without the correction


def test_field_is_kept_for_a_few_new_images_and_estimated_again_for_many(tmp_path):
    field = vignetting()
    write_plate(tmp_path, range(20), field)
    run_workflow("W", tmp_path, jobs(), progress=False)
    first = read_provenance(str(tmp_path / f"{tmp_path.name}_illumination.hdf5"))
    # Two new images of twenty (10%): the field is kept, only the new images are measured.
    write_plate(tmp_path, range(20, 22), field)
    results = run_workflow("W", tmp_path, jobs(), progress=False)
    kept = read_provenance(str(tmp_path / f"{tmp_path.name}_illumination.hdf5"))
    assert kept["field_id"] == first["field_id"] and kept["n_images_used"] == 20
    assert results["MeasureObjects"].processed == 2
    # Six more (8 of the 20 it came from: 40%): estimated again from all 28, and every image is measured again.
    write_plate(tmp_path, range(22, 28), field)
    results = run_workflow("W", tmp_path, jobs(), progress=False)
    again = read_provenance(str(tmp_path / f"{tmp_path.name}_illumination.hdf5"))
    assert again["field_id"] != first["field_id"] and again["n_images_used"] == 28
    assert results["MeasureObjects"].processed == 28


def test_measuring_with_correction_but_no_field_says_what_to_run(tmp_path):
    write_plate(tmp_path, range(2), vignetting())
    results = run_workflow("W", tmp_path, [jobs()[1]], progress=False, ignore_failed_outputs=True)
    assert results["MeasureObjects"].failed == 2
    assert "run the illumination step" in next(iter(results["MeasureObjects"].failed_files.values()))


def test_apply_flat_field_refuses_another_shape():
    with pytest.raises(ValueError, match="differ"):
        apply_flat_field(np.zeros((4, 4)), np.ones((4, 5), np.float32))
