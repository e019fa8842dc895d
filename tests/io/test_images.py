"""Multiscale images: every dtype and backend, viewer attributes, label pyramids."""

import numpy as np
import pytest
from skimage.transform import downscale_local_mean

from batchlib.errors import ContainerError
from batchlib.io import has_image, image_attrs, open_file, read_image, read_image_later, set_image_info, write_image
from batchlib.io.images import VERSION_ATTR, block_mean

VIEWER_ATTRS = {"Color", "Visible", "Skip", "Alpha", "ScaleFactors", "ContrastLimits"}


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.float32], ids=lambda d: np.dtype(d).name)
def test_intensity_round_trip(container, dtype):
    rng = np.random.default_rng(3)
    image = (rng.random((520, 300)) * 200).astype(dtype)
    with open_file(container, "a") as f:
        write_image(f, "raw", image, channel_information="DAPI")
    with open_file(container, "r") as f:
        assert has_image(f, "raw") and not has_image(f, "nope")
        np.testing.assert_array_equal(read_image(f, "raw"), image)
        attrs = image_attrs(f, "raw")
        assert set(attrs) == VIEWER_ATTRS | {"ChannelInformation"}
        assert attrs["Color"] == "White" and attrs["Visible"] is True and attrs["Skip"] is False
        assert attrs["Alpha"] == 1.0 and attrs["ChannelInformation"] == "DAPI"
        assert attrs["ScaleFactors"] == [1, 2, 4]  # down to about 256 px
        np.testing.assert_allclose(attrs["ContrastLimits"], np.percentile(image, [1, 99]))
        for level, factor in enumerate(attrs["ScaleFactors"]):
            s = read_image(f, "raw", level)
            assert s.dtype == image.dtype
            assert s.shape == (-(-520 // factor), -(-300 // factor))
        assert f.attrs[VERSION_ATTR]


def test_read_later_gives_the_image_after_the_file_is_closed_in_another_thread(container):
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(4)
    image = rng.integers(0, 60000, (700, 530)).astype(np.uint16)  # several chunks, edge chunks included
    with open_file(container, "a") as f:
        write_image(f, "raw", image, chunks=(256, 256))
    with open_file(container, "r") as f:
        levels = [read_image_later(f, "raw", level) for level in (0, 1)]
        with pytest.raises(ContainerError, match="s7"):
            read_image_later(f, "raw", 7)
        expected = [read_image(f, "raw", level) for level in (0, 1)]
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda later: later(), levels))
    np.testing.assert_array_equal(got[0], image)
    np.testing.assert_array_equal(got[1], expected[1])


def test_contrast_limits_equal_numpy_percentiles():
    from batchlib.io.images import contrast_limits

    rng = np.random.default_rng(5)
    for image in (
        rng.integers(0, 65535, (300, 301)).astype(np.uint16),
        rng.integers(0, 9, (7, 5)).astype(np.uint8),
        rng.normal(size=(50, 50)).astype(np.float32),
        np.full((4, 4), 7, np.uint16),
    ):
        np.testing.assert_allclose(contrast_limits(image), np.percentile(image, [1, 99]), rtol=0, atol=1e-9)


def test_block_mean_matches_skimage():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60000, (512, 384)).astype(np.uint16)
    expected = np.rint(downscale_local_mean(image.astype(np.float64), (4, 4))).astype(np.uint16)
    np.testing.assert_array_equal(block_mean(image, 4), expected)
    # Edge blocks average only pixels inside the image.
    edge = np.array([[10, 20, 30]], dtype=np.uint8)
    np.testing.assert_array_equal(block_mean(edge, 2), [[15, 30]])
    odd = rng.integers(0, 1000, (9, 7)).astype(np.uint16)
    expected = [[np.rint(odd[y : y + 4, x : x + 4].mean()) for x in range(0, 7, 4)] for y in range(0, 9, 4)]
    np.testing.assert_array_equal(block_mean(odd, 4), expected)
    floats = rng.random((6, 6)).astype(np.float32)
    np.testing.assert_allclose(block_mean(floats, 3), downscale_local_mean(floats, (3, 3)), rtol=1e-6)


def test_levels_are_block_means_of_s0(container):
    image = np.random.default_rng(1).integers(0, 4000, (1024, 1024)).astype(np.uint16)
    with open_file(container, "a") as f:
        write_image(f, "raw", image, scale_factors=[1, 2, 8])
    with open_file(container, "r") as f:
        s1 = read_image(f, "raw", 1)
        np.testing.assert_array_equal(s1, block_mean(image, 2))
        np.testing.assert_array_equal(read_image(f, "raw", 2), block_mean(s1, 4))
        assert list(np.asarray(f["raw"].attrs["ScaleFactors"])) == [1, 2, 8]


def test_label_pyramid_keeps_ids(container):
    rng = np.random.default_rng(2)
    labels = np.zeros((600, 600), dtype=np.int64)
    for i in range(1, 200):
        y, x = rng.integers(0, 590, 2)
        labels[y : y + 10, x : x + 10] = i + 70000  # ids beyond uint16
    with open_file(container, "a") as f:
        write_image(f, "seg", labels, is_label=True)
    with open_file(container, "r") as f:
        s0 = read_image(f, "seg")
        assert s0.dtype == np.uint32
        np.testing.assert_array_equal(s0, labels)
        attrs = image_attrs(f, "seg")
        assert attrs["Color"] == "Glasbey" and "ContrastLimits" not in attrs
        for level, factor in enumerate(attrs["ScaleFactors"]):
            level_data = read_image(f, "seg", level)
            np.testing.assert_array_equal(level_data, labels[::factor, ::factor])
            assert set(np.unique(level_data)) <= set(np.unique(labels))


def test_labels_beyond_uint32_are_refused(container):
    with open_file(container, "a") as f:
        with pytest.raises(ContainerError, match="uint32"):
            write_image(f, "seg", np.array([[0, 2**33]], dtype=np.int64), is_label=True)
        with pytest.raises(ContainerError, match="2D"):
            write_image(f, "raw", np.zeros((2, 3, 4), np.uint8))
        with pytest.raises(ContainerError, match="color"):
            write_image(f, "raw", np.zeros((8, 8), np.uint8), color="Purple")


def test_rewrite_replaces_and_root_attrs_do_not_grow(container):
    with open_file(container, "a") as f:
        for value in (1, 2, 3):
            write_image(f, "raw", np.full((64, 64), value, np.uint16), visible=False, color="Green", limits=(0, 10))
            set_image_info(f, image_information=f"run {value}", well_information="C01")
    with open_file(container, "r") as f:
        assert read_image(f, "raw")[0, 0] == 3
        attrs = image_attrs(f, "raw")
        assert attrs["Visible"] is False and attrs["Color"] == "Green" and attrs["ContrastLimits"] == [0.0, 10.0]
        assert f.attrs["ImageInformation"] == "run 3" and f.attrs["WellInformation"] == "C01"


def test_h5_attribute_types_for_the_viewer(tmp_path):
    """Java HDF5 reads these types: strings, bool, float, int array, float64[2]."""
    import h5py

    path = str(tmp_path / "v.h5")
    with open_file(path, "w") as f:
        write_image(f, "raw", np.arange(600 * 400, dtype=np.uint16).reshape(600, 400))
    with h5py.File(path, "r") as f:
        attrs = f["raw"].attrs
        assert attrs["ScaleFactors"].dtype.kind == "i"
        assert attrs["ContrastLimits"].dtype == np.float64 and attrs["ContrastLimits"].shape == (2,)
        assert isinstance(attrs["Color"], str) and attrs["Skip"].dtype == bool
        assert f["raw/s0"].compression in ("gzip", None)
