"""The container contract, run against every backend (h5, n5, zarr 2, zarr 3)."""

import os

import numpy as np
import pytest

from batchlib.errors import ContainerError
from batchlib.io import open_file

DTYPES = [np.uint8, np.uint16, np.uint32, np.int32, np.int64, np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_dataset_round_trip(container, dtype):
    rng = np.random.default_rng(0)
    data = (rng.random((70, 130)) * 1000).astype(dtype)
    with open_file(container, "a") as f:
        ds = f.create_dataset("group/sub/data", data=data, chunks=(32, 64))
        assert ds.shape == data.shape and np.dtype(ds.dtype) == np.dtype(dtype)
    with open_file(container, "r") as f:
        np.testing.assert_array_equal(f["group/sub/data"][...], data)
        np.testing.assert_array_equal(f["group/sub/data"][10:20, 5:9], data[10:20, 5:9])


def test_groups_membership_delete_require(container):
    with open_file(container, "a") as f:
        g = f.require_group("a")
        assert f.require_group("a").keys() == g.keys() == []
        g.create_dataset("x", data=np.zeros(5))
        assert "a" in f and "a/x" in f and "a/y" not in f and "b" not in f
        assert f.keys() == ["a"] and f["a"].keys() == ["x"]
        same = f.require_dataset("a/x", shape=(5,), dtype=np.float64)
        assert same.shape == (5,)
        with pytest.raises(ContainerError, match="expected"):
            f.require_dataset("a/x", shape=(6,), dtype=np.float64)
        with pytest.raises(ContainerError, match="already exists"):
            f.create_dataset("a/x", data=np.zeros(5))
        del f["a/x"]
        assert "a/x" not in f and "a" in f
        new = f.require_dataset("a/x", shape=(3, 4), dtype=np.uint16)
        assert new.shape == (3, 4)


def test_attributes(container):
    with open_file(container, "a") as f:
        g = f.create_group("img")
        g.attrs["Color"] = "Glasbey"
        g.attrs["Visible"] = True
        g.attrs["ScaleFactors"] = [1, 2, 4]
        g.attrs["Alpha"] = 0.5
        f.attrs["ImageInformation"] = "score 0.9"
    with open_file(container, "r") as f:
        attrs = f["img"].attrs
        assert attrs["Color"] == "Glasbey" and bool(attrs["Visible"]) is True
        assert list(np.asarray(attrs["ScaleFactors"])) == [1, 2, 4] and float(attrs["Alpha"]) == 0.5
        assert f.attrs["ImageInformation"] == "score 0.9"


def test_empty_and_edge_chunks(container):
    data = np.arange(1000 * 3, dtype=np.uint16).reshape(1000, 3)
    with open_file(container, "a") as f:
        f.create_dataset("edge", data=data, chunks=(256, 2))
        f.create_dataset("raw", data=data, compression=None)
        if container.endswith(".n5"):
            with pytest.raises(ContainerError, match="empty dataset"):
                f.create_dataset("empty", shape=(0, 4), dtype=np.float32)
        else:
            f.create_dataset("empty", shape=(0, 4), dtype=np.float32)
    with open_file(container, "r") as f:
        np.testing.assert_array_equal(f["edge"][...], data)
        np.testing.assert_array_equal(f["raw"][...], data)
        assert "empty" not in f or f["empty"].shape == (0, 4)


def test_missing_file_gives_clear_error(tmp_path):
    for ext in (".h5", ".n5", ".zarr"):
        path = str(tmp_path / f"missing{ext}")
        with pytest.raises(ContainerError, match="missing" + ext):
            open_file(path, "r")


@pytest.mark.parametrize("ext", [".h5", ".n5", ".zarr"])
def test_corrupt_container_names_the_file(tmp_path, ext):
    path = tmp_path / f"broken{ext}"
    if ext == ".h5":
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 10)  # a truncated HDF5 signature
    else:
        path.mkdir()
        (path / ("attributes.json" if ext == ".n5" else ".zgroup")).write_text("{not json")
    with pytest.raises(ContainerError) as info, open_file(str(path), "r") as f:
        f.keys()
    assert str(path) in str(info.value)


def test_unknown_extension(tmp_path):
    with pytest.raises(ContainerError, match="unknown container extension '.tif'"):
        open_file(str(tmp_path / "a.tif"))


def test_h5_compressed_write_is_standard_gzip(tmp_path):
    """Chunks compressed in threads must read back through plain HDF5 filters."""
    import h5py

    data = np.random.default_rng(1).integers(0, 4000, (1000, 700)).astype(np.uint16)
    path = str(tmp_path / "g.h5")
    with open_file(path, "w") as f:
        f.create_dataset("d", data=data, chunks=(256, 256), compression="gzip", compression_opts=1)
    with h5py.File(path, "r") as f:
        ds = f["d"]
        assert (ds.compression, ds.shuffle, ds.compression_opts) == ("gzip", True, 1)
        np.testing.assert_array_equal(ds[...], data)
    assert os.path.getsize(path) < data.nbytes
    with pytest.raises(ContainerError, match="gzip"), open_file(path, "a") as f:
        f.create_dataset("z", data=data, compression="zstd")
