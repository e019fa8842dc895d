"""batchlib.crops: windows, the crop file format, the plate index and the reader's filters."""

import os

import h5py
import numpy as np
import pandas as pd
import pytest

from batchlib.crops import (
    CropFile,
    CropStoreError,
    cell_windows,
    cut,
    cut_windows,
    index_name,
    index_table,
    open_crops,
    read_cells,
    write_crop_file,
)


def test_cut_windows_equals_cut_for_every_corner_in_and_outside_the_image():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 1000, (30, 41)).astype(np.uint16)
    corners = rng.integers(-12, 45, (200, 2))
    windows = cut_windows(image, corners, 12)
    for corner, window in zip(corners, windows):
        np.testing.assert_array_equal(window, cut(image, corner, 12))


def test_cell_windows_match_scikit_image():
    from skimage.measure import regionprops

    rng = np.random.default_rng(1)
    labels = np.zeros((50, 60), np.uint32)
    for i in range(1, 8):
        y, x = rng.integers(0, 45), rng.integers(0, 55)
        labels[y : y + rng.integers(2, 9), x : x + rng.integers(2, 9)] = i
    windows = cell_windows(labels, 16)
    regions = regionprops(labels)
    assert windows.labels.tolist() == [r.label for r in regions]
    np.testing.assert_allclose(windows.centers, [r.centroid for r in regions])
    assert windows.bbox.tolist() == [list(r.bbox) for r in regions]
    borders = [r.bbox[0] == 0 or r.bbox[1] == 0 or r.bbox[2] == 50 or r.bbox[3] == 60 for r in regions]
    assert windows.touches_border.tolist() == borders


def make_crop_file(path, seed=0, n=6, compression="none", well="A01", site=0, size=10):
    rng = np.random.default_rng(seed)
    labels = np.zeros((40, 40), np.uint32)
    for i in range(n):
        labels[(i // 3) * 12 + 2 : (i // 3) * 12 + 8, (i % 3) * 12 + 2 : (i % 3) * 12 + 9] = i + 1
    images = {"dna": rng.integers(0, 60000, (40, 40)).astype(np.uint16), "er": rng.random((40, 40)).astype(np.float32)}
    windows = cell_windows(labels, size)
    write_crop_file(str(path), windows, images, labels, {"plate": "P", "well": well, "site": site}, compression)
    return labels, images, windows


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_crop_file_round_trip_in_any_order_and_readable_by_plain_h5py(tmp_path, compression):
    path = tmp_path / "a.crops.hdf5"
    labels, images, windows = make_crop_file(path, compression=compression)
    with CropFile(str(path)) as f:
        assert f.channels == ["dna", "er"] and f.size == 10 and len(f) == 6
        assert f.channel_dtypes == [np.dtype(np.uint16), np.dtype(np.float32)]
        x, m = f.read()
        assert x.shape == (6, 2, 10, 10) and x.dtype == np.float32 and m.dtype == np.uint8
        for i in range(6):
            np.testing.assert_array_equal(x[i, 0], cut(images["dna"], windows.corners[i], 10))
            np.testing.assert_array_equal(x[i, 1], cut(images["er"], windows.corners[i], 10))
            np.testing.assert_array_equal(m[i], cut(labels, windows.corners[i], 10) == i + 1)
        offsets = [5, 2, 2, 0]
        some_x, some_m = f.read(offsets)
        np.testing.assert_array_equal(some_x, x[offsets])
        np.testing.assert_array_equal(some_m, m[offsets])
        table = f.table()
        assert table["label"].tolist() == [1, 2, 3, 4, 5, 6] and set(table["well"]) == {"A01"}
        with pytest.raises(CropStoreError, match="holds 6 cells"):
            f.read([6])
    with h5py.File(path, "r") as plain:  # any HDF5 tool reads the same arrays
        np.testing.assert_array_equal(plain["intensities"][()], x)
        assert plain["intensities"].compression == (None if compression == "none" else "gzip")


def test_an_image_without_cells_gives_an_empty_crop_file(tmp_path):
    path = tmp_path / "e.crops.hdf5"
    make_crop_file(path, n=0)
    with CropFile(str(path)) as f:
        assert len(f) == 0 and f.read()[0].shape == (0, 2, 10, 10) and f.read([])[1].shape == (0, 10, 10)
    assert len(index_table([str(path)], [read_cells(str(path))])) == 0


def write_plate(folder):
    os.makedirs(folder)
    paths = []
    for seed, (well, site) in enumerate([("A01", 0), ("A01", 1), ("B02", 0)]):
        path = os.path.join(folder, f"{well}_{site}.crops.hdf5")
        make_crop_file(path, seed=seed, well=well, site=site)
        paths.append(path)
    index = index_table(paths, [read_cells(p) for p in paths])
    index.to_parquet(os.path.join(folder, index_name(os.path.basename(folder))))
    return paths


def test_reader_filters_batches_and_dask_arrays(tmp_path):
    folder = str(tmp_path / "P")
    paths = write_plate(folder)
    everything = open_crops(folder)
    assert len(everything) == 18 and everything.table["offset"].tolist() == list(range(6)) * 3
    x_all = np.concatenate([CropFile(p).read()[0] for p in paths])

    some = open_crops(folder, wells="A01", sites=[1], labels=[2, 3, 99])
    assert some.table[["well", "site", "label"]].values.tolist() == [["A01", 1, 2], ["A01", 1, 3]]
    np.testing.assert_array_equal(some.read([1, 0])[0], x_all[[8, 7]])
    assert len(open_crops(folder, wells=["B02"], touches_border=True)) == 0
    assert len(open_crops(folder, touches_border=False)) == 18

    seen = []
    for x, m, rows in everything.batches(5, shuffle=True, seed=3):
        positions = rows.index.to_numpy()
        np.testing.assert_array_equal(x, x_all[positions])
        assert len(x) == len(m) == len(rows) <= 5
        seen.extend(positions)
    assert sorted(seen) == list(range(18)) and seen != list(range(18))

    x_dask, m_dask = some.to_dask()
    np.testing.assert_array_equal(x_dask.compute(), x_all[[7, 8]])
    assert m_dask.shape == (2, 10, 10)
    shuffled = open_crops(folder)
    shuffled.table = shuffled.table.iloc[::-1].reset_index(drop=True)
    np.testing.assert_array_equal(shuffled.to_dask()[0].compute(), x_all[::-1])


def test_reader_errors_name_the_file_and_what_to_do(tmp_path):
    folder = str(tmp_path / "Q")
    with pytest.raises(CropStoreError, match=r"Q_crops\.parquet.*crop step"):
        open_crops(folder)
    paths = write_plate(folder)
    os.remove(paths[1])
    with open_crops(folder) as crops, pytest.raises(CropStoreError, match=r"A01_1\.crops\.hdf5.*missing"):
        crops.read([7])
    with h5py.File(paths[0], "a") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(CropStoreError, match="format 'something-else'"):
        CropFile(paths[0])
    with open(paths[2], "wb") as f:
        f.write(b"not hdf5")
    with pytest.raises(CropStoreError, match=r"B02_0\.crops\.hdf5 cannot be read"):
        read_cells(paths[2])


def test_index_table_columns_and_types(tmp_path):
    folder = str(tmp_path / "R")
    write_plate(folder)
    index = pd.read_parquet(os.path.join(folder, "R_crops.parquet"))
    assert list(index.columns) == [
        "plate", "well", "site", "label", "centroid_y", "centroid_x", "bbox_min_y", "bbox_min_x",
        "bbox_max_y", "bbox_max_x", "touches_border", "file", "offset",
    ]  # fmt: skip
    assert index["site"].dtype == np.int64 and index["file"].iloc[-1] == "B02_0.crops.hdf5"
