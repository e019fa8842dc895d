"""Single-cell crops: the crop store (arrays, one HDF5 file per image) or a PNG per cell and channel."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from ..base import BatchJob, PlateJob
from ..crops import (
    COMPRESSIONS,
    CROP_FILE_EXT,
    PNG_METADATA_COLUMNS,
    cell_intensities,
    cell_masks,
    cell_windows,
    crop_windows,
    cut,
    index_table,
    read_cells,
    write_crop_arrays,
    write_png,
    write_png_folder,
)
from ..errors import ConfigError
from ..io import open_file, read_image_later
from ..plate import compile_scheme, parse_image_name, plate_of
from .plate_cache import CellCache

#: Crop formats: arrays in a crop file per image (:mod:`batchlib.crops`), or PNG files in a folder per image.
CROP_FORMATS = ("store", "png")
#: Columns of a PNG folder's metadata.csv before the per-channel file names (kept under its former name).
METADATA_COLUMNS = PNG_METADATA_COLUMNS

__all__ = ["CROP_FORMATS", "CropCells", "IndexCrops", "METADATA_COLUMNS", "crop_windows", "cut", "write_png"]


class CropCells(BatchJob):
    """For each cell, a fixed-size crop centred on it of the chosen channels, and its mask.

    ``format="store"`` (the default) writes each image's crops as arrays into
    one HDF5 file, ``<image>.crops.hdf5`` (:mod:`batchlib.crops`; read them
    with :func:`batchlib.crops.open_crops` once :class:`IndexCrops` has
    indexed the plate). ``format="png"`` writes a folder ``<image>.crops/``
    with ``<label>_<channel>.png``, ``<label>_mask.png`` and ``metadata.csv``
    (plate, well, site, label, centroid, bounding box, whether the cell
    touches the image border, file names). Either is written whole and
    renamed, so it is never half-written.

    Parameters
    ----------
    channels : list of str
        Image channels to crop.
    cell_key : str
        The cell segmentation.
    size : int
        Crop width and height in pixels.
    format : str
        ``"store"`` or ``"png"``.
    compression : str
        Of the store: ``"none"`` or ``"gzip"`` (level 1: about half the size, slower to write).
    """

    parameter_names: ClassVar[tuple[str, ...]] = (
        "channels",
        "cell_key",
        "size",
        "scheme",
        "input_keys",
        "format",
        "compression",
    )

    def __init__(
        self,
        channels: Sequence[str],
        cell_key: str = "cell_segmentation",
        size: int = 64,
        scheme: str = "batchlib",
        format: str = "store",
        compression: str = "none",
        input_pattern: str = "*.h5",
        identifier: str | None = None,
    ):
        if format not in CROP_FORMATS:
            raise ConfigError(f"crop format (--crop-format) must be one of {', '.join(CROP_FORMATS)}, got {format!r}")
        if compression not in COMPRESSIONS:
            raise ConfigError(
                f"crop compression (--crop-compression) must be one of {', '.join(COMPRESSIONS)}, got {compression!r}"
            )
        output_ext = CROP_FILE_EXT if format == "store" else ".crops"
        super().__init__(input_pattern=input_pattern, output_ext=output_ext, identifier=identifier)
        self.channels = list(channels)
        self.cell_key = cell_key
        self.size = int(size)
        self.scheme = scheme
        self.format = format
        self.compression = compression
        self.input_keys = (cell_key, *self.channels)

    def run(self, input_files, output_files, **kwargs):
        # Containers are read and crop files written here; decompressing and cutting run in threads.
        from ..executors import job_threads
        from ..io.threads import compute_in_threads

        regex = compile_scheme(self.scheme)

        def read(paths: tuple[str, str]) -> tuple:
            with open_file(paths[0], "r") as f:
                return read_image_later(f, self.cell_key), {c: read_image_later(f, c) for c in self.channels}

        def cut_crops(cells, images: dict) -> tuple:
            cells, images = cells(), {channel: image() for channel, image in images.items()}
            windows = cell_windows(cells, self.size)
            dtypes = {channel: image.dtype for channel, image in images.items()}
            return windows, cell_intensities(images, windows), cell_masks(cells, windows), dtypes

        def write(paths: tuple[str, str], crops: tuple) -> None:
            inp, out = paths
            windows, intensities, masks, dtypes = crops
            name = parse_image_name(os.path.basename(inp), regex)
            names = {"plate": plate_of(inp), "well": name.well.name, "site": int(name.site)}
            if self.format == "store":
                write_crop_arrays(out, windows, intensities, masks, dtypes, names, self.compression)
                return
            table = index_table([out], [(names, windows.table().to_records(index=False))])
            write_png_folder(out, table, intensities, masks, self.channels, list(dtypes.values()))

        compute_in_threads(zip(input_files, output_files), read, cut_crops, write, job_threads())


class IndexCrops(PlateJob):
    """The plate's crop index ``<plate>_crops.parquet``: one row per cell of every crop file.

    Columns :data:`batchlib.crops.INDEX_COLUMNS`: plate, well, site, label,
    centroid, bounding box, ``touches_border``, ``file`` (the crop file's name)
    and ``offset`` (the cell's row in it). A job object keeps each file's
    rows between runs (a watcher's), so a rerun reads only new and changed
    crop files.
    """

    def __init__(self, input_pattern: str = "*" + CROP_FILE_EXT, identifier: str | None = None):
        super().__init__(input_pattern, "{plate}_crops.parquet", identifier=identifier)
        self._cache = CellCache()

    def run(self, input_files, output_files, **kwargs):
        from ..profile_files import write_parquet

        paths = sorted(input_files)
        write_parquet(index_table(paths, self._cache.get(_crop_file_cells, paths, (), None)), output_files[0])


def _crop_file_cells(path: str) -> tuple[dict, np.ndarray]:
    """:func:`batchlib.crops.read_cells` under a name of its own (the cache's key)."""
    return read_cells(path)
