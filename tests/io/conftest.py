"""The contract fixture: one empty container per backend (h5, n5, zarr 2, zarr 3)."""

import pytest

from batchlib.io import open_file

BACKENDS = [(".h5", {}), (".n5", {}), (".zarr", {"zarr_format": 2}), (".zarr", {"zarr_format": 3})]
IDS = ["h5", "n5", "zarr2", "zarr3"]


@pytest.fixture(params=BACKENDS, ids=IDS)
def container(request, tmp_path):
    """Path of a new, empty container of each backend in turn."""
    ext, kwargs = request.param
    path = str(tmp_path / f"c{ext}")
    with open_file(path, "w", **kwargs):
        pass
    return path
