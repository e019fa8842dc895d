"""QualityControl: the heatmaps' colour range, values, blank wells, and the montage's site labels."""

import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps
from PIL import Image

from batchlib import run_workflow
from batchlib.io import open_file, read_image, set_image_info, write_image, write_plate_table
from batchlib.jobs.qc import (
    QualityControl,
    colour_range,
    heatmap_figure,
    image_overlay,
    imaged_grid,
    label_tile,
    overlay,
    plate_grid,
    save_heatmap,
)


def test_colour_range_of_counts_starts_at_zero():
    # One cell of difference must not span the whole scale (it ran 239-240).
    assert colour_range([239, 240], counts=True) == (0.0, 240.0)
    assert colour_range([0, 5, np.nan], counts=True) == (0.0, 5.0)
    assert colour_range([0, 0], counts=True) == (0.0, 1.0)


def test_colour_range_is_at_least_a_fifth_of_the_median_wide():
    vmin, vmax = colour_range([100.0, 101.0])  # 1% apart
    assert vmax - vmin == pytest.approx(0.2 * 100.5)
    assert (vmin + vmax) / 2 == pytest.approx(100.5)
    vmin, vmax = colour_range([-2.0, -2.02, -1.98])  # the magnitude of a negative median
    assert (vmin, vmax) == pytest.approx((-2.2, -1.8))


def test_colour_range_spans_values_that_differ_a_lot():
    assert colour_range([1.0, 3.0]) == (1.0, 3.0)
    assert colour_range([1.0, 2.0, 3.0, np.nan]) == (1.0, 3.0)


def _cell_pixels(fig, ax, row: int, column: int) -> np.ndarray:
    """RGB pixels of the top-left quarter of a well's cell, clear of its text and of the lines between wells."""
    height = fig.canvas.get_width_height()[1]
    (x0, y0), (x1, y1) = ax.transData.transform([(column - 0.4, row - 0.4), (column - 0.15, row - 0.15)])
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    return image[int(height - y0) : int(height - y1), int(x0) : int(x1)].reshape(-1, 3)


def _middle_pixels(fig, ax, row: int, column: int) -> np.ndarray:
    """RGB pixels of the middle of a well's cell, where its value is printed."""
    height = fig.canvas.get_width_height()[1]
    x, y = ax.transData.transform((column, row))
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    return image[int(height - y) - 4 : int(height - y) + 4, int(x) - 4 : int(x) + 4].reshape(-1, 3).copy()


def test_heatmap_prints_values_and_tells_zero_no_value_and_not_imaged_apart(tmp_path):
    wells = ["A01", "A02", "A03", "B01"]
    grid = plate_grid(wells, [0.0, 5.0, 10.0, np.nan])
    imaged = imaged_grid(wells)
    assert grid[0, 0] == 0 and np.isnan(grid[1, 0]) and np.isnan(grid[1, 1])
    assert imaged[1, 0] and not imaged[1, 1]

    fig = heatmap_figure(grid, "P1: n_cells", imaged, counts=True)
    ax = fig.axes[0]
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert texts == {(0, 0): "0", (0, 1): "5", (0, 2): "10", (1, 0): "n/a"}  # nothing in wells not imaged
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("not imaged" in t for t in legend) and any("n/a" in t for t in legend)

    fig.canvas.draw()
    zero, no_value, not_imaged = (np.median(_cell_pixels(fig, ax, r, c), axis=0) for r, c in [(0, 0), (1, 0), (1, 1)])
    np.testing.assert_allclose(zero, np.array(colormaps["viridis"](0.0)[:3]) * 255, atol=2)  # the colour of 0
    for a, b in [(zero, no_value), (zero, not_imaged), (no_value, not_imaged)]:
        assert np.abs(a - b).sum() > 60
    hatch = _cell_pixels(fig, ax, 1, 1)
    assert len(np.unique(hatch, axis=0)) > 1  # the "x" on the grey

    # The text is really drawn: without it the middle of the 0 well is plain.
    with_text = _middle_pixels(fig, ax, 0, 0)
    for text in list(ax.texts):
        text.remove()
    fig.canvas.draw()
    without_text = _middle_pixels(fig, ax, 0, 0)
    assert len(np.unique(without_text, axis=0)) == 1 and len(np.unique(with_text, axis=0)) > 1

    # save_heatmap writes that figure.
    save_heatmap(str(tmp_path / "h.png"), grid, "P1: n_cells", imaged, counts=True)
    fig = heatmap_figure(grid, "P1: n_cells", imaged, counts=True)
    fig.canvas.draw()
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "h.png"))[..., :3], np.asarray(fig.canvas.buffer_rgba())[..., :3]
    )


def _write_site(path: str, seed: int, info: str | None) -> None:
    rng = np.random.default_rng(seed)
    nuclei = np.zeros((96, 96), np.uint16)
    nuclei[20:40, 20:40], nuclei[60:80, 50:75] = 1, 2
    cells = np.zeros((96, 96), np.uint16)
    cells[12:48, 12:48], cells[52:88, 42:84] = 1, 2
    with open_file(path, "w") as f:
        write_image(f, "nuclei", rng.integers(100, 4000, (96, 96), dtype=np.uint16))
        write_image(f, "nucleus_segmentation", nuclei, is_label=True)
        write_image(f, "cell_segmentation", cells, is_label=True)
        if info is not None:
            set_image_info(f, info, info.split("-")[0])


def _plain_overlay(path: str) -> np.ndarray:
    with open_file(path, "r") as f:
        images = [read_image(f, key) for key in ("nuclei", "nucleus_segmentation", "cell_segmentation")]
    return overlay(*images)


def test_montage_tile_is_labelled_with_its_site(tmp_path):
    labelled = str(tmp_path / "WellC01_PointC01_0002_Seq0001.h5")
    unlabelled = str(tmp_path / "WellC02_PointC02_0000_Seq0002.h5")
    _write_site(labelled, 0, "C01-0002")
    _write_site(unlabelled, 1, None)

    plain = _plain_overlay(labelled)
    tile = image_overlay(labelled, "nuclei", "nucleus_segmentation", "cell_segmentation")
    assert tile.shape == plain.shape and tile.dtype == np.uint8
    assert (tile[:12, :40] != plain[:12, :40]).any()  # the label in the top-left corner
    np.testing.assert_array_equal(tile[48:], plain[48:])  # and nothing else
    np.testing.assert_array_equal(tile, label_tile(plain, "C01-0002"))  # its text is ImageInformation
    assert (tile != label_tile(plain, "WellC01_PointC01_0002_Seq0001")).any()

    # No ImageInformation: the file name stem.
    tile = image_overlay(unlabelled, "nuclei", "nucleus_segmentation", "cell_segmentation")
    np.testing.assert_array_equal(tile, label_tile(_plain_overlay(unlabelled), "WellC02_PointC02_0000_Seq0002"))


def test_job_draws_labelled_montage_and_heatmaps_with_blank_wells(tmp_path):
    folder = tmp_path / "P1"
    folder.mkdir()
    sites = [str(folder / "WellC01_PointC01_0002_Seq0001.h5"), str(folder / "WellC02_PointC02_0000_Seq0002.h5")]
    _write_site(sites[0], 0, "C01-0002")
    _write_site(sites[1], 1, "C02-0000")
    wells = pd.DataFrame({"well_name": ["C01", "C02", "C03"], "n_cells": [0, 240, 239], "score": [np.nan, 1.0, 1.01]})
    with open_file(str(folder / "P1_table.hdf5"), "w") as f:
        write_plate_table(f, "wells", wells)

    run_workflow("qc", str(folder), [QualityControl(features=("n_cells", "score"))], progress=False)

    qc = folder / "P1_qc"
    montage = np.asarray(Image.open(qc / "segmentation_montage.png"))
    assert montage.shape == (96, 192, 3)
    for i, (path, label) in enumerate(zip(sites, ["C01-0002", "C02-0000"])):
        np.testing.assert_array_equal(montage[:, i * 96 : (i + 1) * 96], label_tile(_plain_overlay(path), label))
    imaged = imaged_grid(wells["well_name"])
    for feature, counts in [("n_cells", True), ("score", False)]:
        fig = heatmap_figure(plate_grid(wells["well_name"], wells[feature]), f"P1: {feature}", imaged, counts)
        fig.canvas.draw()
        png = np.asarray(Image.open(qc / f"heatmap_{feature}.png"))[..., :3]
        np.testing.assert_array_equal(png, np.asarray(fig.canvas.buffer_rgba())[..., :3])
        texts = {t.get_text() for t in fig.axes[0].texts}
        assert texts == ({"0", "240", "239"} if counts else {"n/a", "1", "1.01"})


def test_a_heatmap_per_control_type_colours_only_that_types_wells(tmp_path):
    from batchlib.jobs.qc import QualityControl, imaged_grid

    wells = pd.DataFrame(
        {
            "well_name": ["A01", "A02", "B01", "B02"],
            "Metadata_control_type": ["negcon", "trt", "negcon", None],
            "n_cells": [10, 20, 30, 40],
        }
    )
    imaged = imaged_grid(wells["well_name"])
    drawn = QualityControl().control_heatmaps(wells, ["n_cells"], imaged, str(tmp_path), "P1")
    by_name = {path.rsplit("/", 1)[-1]: grid for path, grid, *_ in drawn}
    assert sorted(by_name) == ["heatmap_n_cells_negcon.png", "heatmap_n_cells_trt.png"]
    negcon = by_name["heatmap_n_cells_negcon.png"]
    assert negcon[0, 0] == 10 and negcon[1, 0] == 30 and np.isnan(negcon[0, 1]) and np.isnan(negcon[1, 1])
    assert QualityControl(control_column=None).control_heatmaps(wells, ["n_cells"], imaged, str(tmp_path), "P1") == []


def test_a_large_image_is_drawn_from_its_pyramid_level_of_at_most_1024_pixels(tmp_path):
    from batchlib.jobs.qc import MONTAGE_TILE_SIDE, overview_level

    path = str(tmp_path / "WellC01_PointC01_0000_Seq0000.h5")
    rng = np.random.default_rng(3)
    nuclei = np.zeros((2100, 1800), np.uint16)
    nuclei[100:300, 100:260] = 1
    with open_file(path, "w") as f:
        write_image(f, "nuclei", rng.integers(100, 4000, nuclei.shape, dtype=np.uint16))
        write_image(f, "nucleus_segmentation", nuclei, is_label=True)
        levels = sorted(int(k[1:]) for k in f["nuclei"] if k.startswith("s"))
        shapes = [f[f"nuclei/s{i}"].shape for i in levels]
        level = overview_level(f["nuclei"])
    # The finest level within the limit: the one before is larger, this one is not.
    assert max(shapes[level]) <= MONTAGE_TILE_SIDE < max(shapes[level - 1]) and level >= 1
    tile = image_overlay(path, "nuclei", "nucleus_segmentation", None)
    with open_file(path, "r") as f:
        plain = overlay(read_image(f, "nuclei", level), read_image(f, "nucleus_segmentation", level), None)
    np.testing.assert_array_equal(tile, label_tile(plain, "WellC01_PointC01_0000_Seq0000"))


def test_inner_boundaries_equal_scikit_image():
    from skimage.segmentation import find_boundaries

    from batchlib.jobs.qc import inner_boundaries
    from batchlib.synthetic import synthetic_site

    _, nuclei, cells = synthetic_site((200, 240), n_nuclei=30, seed=4)
    rng = np.random.default_rng(0)
    for labels in (nuclei, cells, rng.integers(0, 4, (40, 50)), np.zeros((3, 3), int)):
        np.testing.assert_array_equal(inner_boundaries(labels), find_boundaries(labels, mode="inner"))
