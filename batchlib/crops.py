"""Single-cell crops as arrays: the crop store, its plate index and a reader for machine learning.

A plate's crops live in one HDF5 file per image, ``<image>.crops.hdf5``
beside the image's container (why one file per image and not the container
or one Zarr per plate: docs/architecture.md and BENCHMARKS.md):

- ``intensities``: ``(n_cells, n_channels, size, size)``, the channels'
  pixels in their common dtype (:attr:`CropFile.channels` gives the order);
- ``masks``: ``(n_cells, size, size)`` uint8, 1 where the pixel belongs to
  the cell;
- ``cells``: a table (compound dataset), one row per cell, :data:`CELL_COLUMNS`;
- attributes ``plate``, ``well``, ``site``, ``channels``,
  ``channel_dtypes``, ``size`` and ``format`` (:data:`FORMAT`).

Each cell is one chunk (uncompressed by default, or deflated: ``compression="gzip"``),
so a training loop reading random cells reads only what it uses. The file is
written whole under a temporary name and renamed, so it is never half there.
``<plate>_crops.parquet`` indexes the plate: one row per cell with its plate,
well, site, label, centroid, bounding box, border flag, ``file`` and
``offset`` (its row in that file). :func:`open_crops` reads both.

Examples
--------
A training loop over a plate's crops (``plate`` a plate folder)::

    from batchlib.crops import open_crops
    crops = open_crops(plate, wells=["A01", "A02"], touches_border=False)
    for x, masks, rows in crops.batches(64, shuffle=True, seed=0):
        x = x.astype("float32") / 65535            # (64, channels, size, size)
        loss = train_step(x * masks[:, None], rows["well"].to_numpy())
"""

from __future__ import annotations

import glob
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import BatchlibError

#: The store's format, an attribute of every crop file; readers refuse other values.
FORMAT = "batchlib-crops-1"
#: Name of an image's crop file: the container's name without its extension, then this.
CROP_FILE_EXT = ".crops.hdf5"
#: Per-cell columns of a crop file and of the plate index (plate, well, site come from the file).
CELL_COLUMNS = (
    "label",
    "centroid_y",
    "centroid_x",
    "bbox_min_y",
    "bbox_min_x",
    "bbox_max_y",
    "bbox_max_x",
    "touches_border",
)
#: Columns of the plate index ``<plate>_crops.parquet``.
INDEX_COLUMNS = ("plate", "well", "site", *CELL_COLUMNS, "file", "offset")
#: Columns of a PNG folder's ``metadata.csv`` before the per-channel file names.
PNG_METADATA_COLUMNS = ["plate", "well", "site", *CELL_COLUMNS, "mask_file"]
#: Compressions a crop file may use (HDF5's own filters, readable by any HDF5 tool).
COMPRESSIONS = ("gzip", "none")
#: Held around every HDF5 call of this module: readers in several threads (dask's threaded scheduler) crashed
#: the process in h5py's direct chunk reads without it.
_HDF5_LOCK = threading.RLock()


class CropStoreError(BatchlibError, ValueError):
    """A crop store that is missing, of another format, or asked for something it does not hold."""


def index_name(plate: str) -> str:
    """File name of a plate's crop index.

    Examples
    --------
    >>> index_name("P1")
    'P1_crops.parquet'
    """
    return f"{plate}_crops.parquet"


@dataclass
class CellWindows:
    """Where each cell of a label image is and the ``size`` x ``size`` window centred on it.

    Attributes
    ----------
    labels : ndarray
        Cell ids, ascending.
    centers : ndarray
        ``(n, 2)`` centroids (y, x) in pixels.
    bbox : ndarray
        ``(n, 4)`` bounding boxes: min y, min x, max y, max x (max exclusive).
    corners : ndarray
        ``(n, 2)`` top-left corners of the windows (may lie outside the image).
    touches_border : ndarray
        Whether the cell touches the image border.
    size : int
        Window width and height.
    """

    labels: np.ndarray
    centers: np.ndarray
    bbox: np.ndarray
    corners: np.ndarray
    touches_border: np.ndarray
    size: int

    def __len__(self) -> int:
        return len(self.labels)

    def table(self) -> pd.DataFrame:
        """The per-cell columns (:data:`CELL_COLUMNS`) as a DataFrame."""
        return pd.DataFrame(
            {
                "label": self.labels.astype(np.int64),
                "centroid_y": self.centers[:, 0],
                "centroid_x": self.centers[:, 1],
                "bbox_min_y": self.bbox[:, 0],
                "bbox_min_x": self.bbox[:, 1],
                "bbox_max_y": self.bbox[:, 2],
                "bbox_max_x": self.bbox[:, 3],
                "touches_border": self.touches_border.astype(np.int64),
            }
        )


def crop_windows(centers: np.ndarray, size: int) -> np.ndarray:
    """Top-left corners of ``size`` x ``size`` windows centred on ``centers`` (rows of y, x).

    Examples
    --------
    >>> crop_windows(np.array([[10.4, 3.6]]), 8).tolist()
    [[6, 0]]
    """
    return (np.round(centers).astype(np.int64) - size // 2).reshape(-1, 2)


def cell_windows(cells: np.ndarray, size: int) -> CellWindows:
    """Centroid, bounding box and crop window of every cell of a label image.

    Parameters
    ----------
    cells : ndarray
        2D label image, 0 background.
    size : int
        Window width and height in pixels.

    Returns
    -------
    CellWindows

    Examples
    --------
    >>> cells = np.zeros((6, 6), np.uint32); cells[1:3, 2:5] = 4
    >>> w = cell_windows(cells, 4)
    >>> w.labels.tolist(), w.centers.tolist(), w.bbox.tolist(), w.corners.tolist()
    ([4], [[1.5, 3.0]], [[1, 2, 3, 5]], [[0, 1]])
    """
    from .measure import ObjectPixels

    pixels = ObjectPixels(cells)
    rows, cols = np.divmod(pixels.index, cells.shape[1])
    counts = pixels.counts[:, None] if len(pixels.ids) else np.ones((0, 1))
    sums = np.stack([pixels.reduce(np.add, rows.astype(float)), pixels.reduce(np.add, cols.astype(float))], 1)
    centers = sums.reshape(-1, 2) / counts
    bbox = np.stack(
        [
            pixels.reduce(np.minimum, rows),
            pixels.reduce(np.minimum, cols),
            pixels.reduce(np.maximum, rows) + 1,
            pixels.reduce(np.maximum, cols) + 1,
        ],
        1,
    ).reshape(-1, 4)
    touches = (bbox[:, 0] == 0) | (bbox[:, 1] == 0) | (bbox[:, 2] == cells.shape[0]) | (bbox[:, 3] == cells.shape[1])
    return CellWindows(pixels.ids, centers, bbox, crop_windows(centers, size), touches, int(size))


def cut_windows(image: np.ndarray, corners: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` windows of ``image`` at ``corners``, zero outside the image.

    Equal to :func:`cut` for each corner, in one gather.

    Examples
    --------
    >>> cut_windows(np.arange(9).reshape(3, 3), np.array([[-1, 1], [1, 1]]), 2).tolist()
    [[[0, 0], [1, 2]], [[4, 5], [7, 8]]]
    """
    corners = np.asarray(corners, np.int64).reshape(-1, 2)
    if not len(corners):
        return np.zeros((0, size, size), image.dtype)
    # Pad so that every window lies inside; windows of cells whose centroid is in the image need at most size.
    pad = int(max(size, -corners.min(), (corners.max(0) + size - np.array(image.shape)).max()))
    padded = np.pad(image, pad)
    views = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
    return views[corners[:, 0] + pad, corners[:, 1] + pad]


def cut(image: np.ndarray, corner: Sequence[int], size: int) -> np.ndarray:
    """A ``size`` x ``size`` window of ``image`` at ``corner``, zero-padded outside the image.

    Examples
    --------
    >>> cut(np.arange(9).reshape(3, 3), (-1, 1), 2).tolist()
    [[0, 0], [1, 2]]
    """
    out = np.zeros((size, size), dtype=image.dtype)
    y0, x0 = corner
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + size, image.shape[0]), min(x0 + size, image.shape[1])
    if ye > ys and xe > xs:
        out[ys - y0 : ye - y0, xs - x0 : xe - x0] = image[ys:ye, xs:xe]
    return out


def cell_masks(cells: np.ndarray, windows: CellWindows) -> np.ndarray:
    """``(n, size, size)`` uint8 masks: 1 where a window's pixel belongs to its cell."""
    cut_cells = cut_windows(cells, windows.corners, windows.size)
    return (cut_cells == windows.labels.astype(cut_cells.dtype)[:, None, None]).astype(np.uint8)


def cell_intensities(images: dict[str, np.ndarray], windows: CellWindows) -> np.ndarray:
    """``(n, channels, size, size)``: every channel's window of every cell, in the channels' common dtype."""
    dtype = np.result_type(*images.values()) if images else np.dtype(np.uint16)
    out = np.empty((len(windows), len(images), windows.size, windows.size), dtype)
    for c, image in enumerate(images.values()):
        out[:, c] = cut_windows(image, windows.corners, windows.size)
    return out


def write_crop_file(
    path: str,
    windows: CellWindows,
    images: dict[str, np.ndarray],
    cells: np.ndarray,
    names: dict[str, object],
    compression: str = "none",
) -> None:
    """Write one image's crops (all cells, all channels of ``images``) to the HDF5 file ``path``.

    Parameters
    ----------
    path : str
        The file to write (created; the caller renames it into place).
    windows : CellWindows
        The cells and their windows (:func:`cell_windows`).
    images : dict
        Channel name to 2D image, in the order the channels are stored.
    cells : ndarray
        The label image the windows come from (for the masks).
    names : dict
        ``plate``, ``well`` and ``site`` of the image (file attributes).
    compression : str
        ``"none"`` or ``"gzip"`` (HDF5's deflate at level 1 after its byte
        shuffle: about half the size, readable by any HDF5 tool).
    """
    intensities, masks = cell_intensities(images, windows), cell_masks(cells, windows)
    dtypes = {channel: image.dtype for channel, image in images.items()}
    write_crop_arrays(path, windows, intensities, masks, dtypes, names, compression)


def write_crop_arrays(
    path: str,
    windows: CellWindows,
    intensities: np.ndarray,
    masks: np.ndarray,
    dtypes: dict[str, np.dtype],
    names: dict[str, object],
    compression: str = "none",
) -> None:
    """Write crops already cut (:func:`cell_intensities`, :func:`cell_masks`) to the HDF5 file ``path``.

    The writing half of :func:`write_crop_file`, for a job that cuts in other
    threads than the one calling h5py. ``dtypes`` maps each channel, in the
    order of ``intensities``' second axis, to its image's dtype.
    """
    import h5py

    if compression not in COMPRESSIONS:
        raise CropStoreError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")
    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["channels"] = list(dtypes)
        f.attrs["channel_dtypes"] = [np.dtype(dtype).str for dtype in dtypes.values()]
        f.attrs["size"] = windows.size
        for key, value in names.items():
            f.attrs[key] = value
        _write_cells(f, "intensities", intensities, compression)
        _write_cells(f, "masks", masks, compression)
        f.create_dataset("cells", data=windows.table().to_records(index=False))


def _write_cells(f, name: str, array: np.ndarray, compression: str) -> None:
    """A dataset with one chunk per cell; gzip chunks compressed in the chunk threads (``write_compressed``)."""
    if not array.size:  # HDF5 chunks need a non-empty shape
        f.create_dataset(name, data=array)
        return
    chunk = (1, *array.shape[1:])
    if compression == "none":
        f.create_dataset(name, data=array, chunks=chunk)
        return
    from .io.h5chunks import write_compressed

    dataset = f.create_dataset(
        name, shape=array.shape, dtype=array.dtype, chunks=chunk, compression="gzip", compression_opts=1, shuffle=True
    )
    write_compressed(dataset, array)


class CropFile:
    """One image's crop file, open for reading.

    Parameters
    ----------
    path : str
        A ``*.crops.hdf5`` file.
    """

    def __init__(self, path: str):
        import h5py

        self.path = path
        try:
            with _HDF5_LOCK:
                self._file = h5py.File(path, "r")
        except OSError as err:
            raise CropStoreError(f"crop file {path} cannot be read ({err}); run the crop step again") from err
        with _HDF5_LOCK:
            attrs = self._file.attrs
            found = attrs.get("format")
            if found != FORMAT:
                self._file.close()
                raise CropStoreError(
                    f"crop file {path} has format {found!r}, expected {FORMAT!r}; run the crop step again"
                )
            self.channels = [str(c) for c in attrs["channels"]]
            self.channel_dtypes = [np.dtype(str(d)) for d in attrs["channel_dtypes"]]
            self.size = int(attrs["size"])
            self.names = {key: attrs[key] for key in ("plate", "well", "site") if key in attrs}
            self._readers: dict[str, _CellReader] = {}
            self._n = int(self._file["masks"].shape[0])

    def __len__(self) -> int:
        return self._n

    def table(self) -> pd.DataFrame:
        """The per-cell metadata (:data:`CELL_COLUMNS`) with plate, well and site."""
        with _HDF5_LOCK:
            rows = self._file["cells"][()]
        return index_table([self.path], [(self.names, rows)]).drop(columns=["file", "offset"])

    def read(self, offsets: Sequence[int] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Intensities ``(k, channels, size, size)`` and masks ``(k, size, size)`` of the cells at ``offsets``.

        ``None`` reads every cell. Offsets may repeat and come in any order.
        """
        if offsets is None:
            with _HDF5_LOCK:
                return self._file["intensities"][()], self._file["masks"][()]
        offsets = np.asarray(offsets, np.int64).reshape(-1)
        if len(offsets) and (offsets.min() < 0 or offsets.max() >= len(self)):
            raise CropStoreError(f"crop file {self.path} holds {len(self)} cells; offsets asked: {offsets.tolist()}")
        with _HDF5_LOCK:
            if not self._readers:
                self._readers = {name: _CellReader(self._file[name]) for name in ("intensities", "masks")}
            return self._readers["intensities"].read(offsets), self._readers["masks"].read(offsets)

    def close(self) -> None:
        with _HDF5_LOCK:
            self._readers = {}
            self._file.close()

    def __enter__(self) -> CropFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def crop_files(folder: str) -> list[str]:
    """The crop files of a plate folder, sorted by name."""
    return sorted(glob.glob(os.path.join(glob.escape(folder), "*" + CROP_FILE_EXT)))


def read_cells(path: str) -> tuple[dict, np.ndarray]:
    """A crop file's plate, well and site and its per-cell rows (a structured array of :data:`CELL_COLUMNS`).

    The light read that indexing a plate needs: no dataset of pixels is opened.
    """
    import h5py

    try:
        with _HDF5_LOCK, h5py.File(path, "r") as f:
            attrs = f.attrs
            if attrs.get("format") != FORMAT:
                raise CropStoreError(
                    f"crop file {path} has format {attrs.get('format')!r}, expected {FORMAT!r}; run the crop step again"
                )
            return {key: attrs[key] for key in ("plate", "well", "site") if key in attrs}, f["cells"][()]
    except OSError as err:
        raise CropStoreError(f"crop file {path} cannot be read ({err}); run the crop step again") from err


def index_table(paths: Sequence[str], cells: Sequence[tuple[dict, np.ndarray]]) -> pd.DataFrame:
    """The plate index: one row per cell of the files ``paths``, :data:`INDEX_COLUMNS`, in file order.

    Parameters
    ----------
    paths : list of str
        Crop files (their base names become the ``file`` column).
    cells : list of (dict, ndarray)
        What :func:`read_cells` returns for each.
    """
    counts = np.array([len(rows) for _, rows in cells], np.int64)
    columns: dict[str, object] = {}
    for key, default in (("plate", ""), ("well", ""), ("site", 0)):
        values = [names.get(key, default) for names, _ in cells]
        values = [str(v) for v in values] if key != "site" else [int(v) for v in values]
        columns[key] = np.repeat(np.array(values, dtype=object if key != "site" else np.int64), counts)
    rows = np.concatenate([r for _, r in cells]) if cells else None
    for column in CELL_COLUMNS:
        columns[column] = rows[column] if rows is not None else np.zeros(0)
    columns["file"] = np.repeat(np.array([os.path.basename(p) for p in paths], dtype=object), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    columns["offset"] = np.arange(int(counts.sum()), dtype=np.int64) - starts
    return pd.DataFrame(columns)[list(INDEX_COLUMNS)]


def _as_list(value) -> list | None:
    if value is None:
        return None
    return [value] if isinstance(value, (str, int, np.integer)) else list(value)


class CropSet:
    """The crops of a plate (or the part of it selected): a metadata table and lazily read arrays.

    Made by :func:`open_crops`. Rows of :attr:`table` are cells, in the
    order :meth:`read`, :meth:`batches`, ``crops[i]`` and the dask arrays
    use.

    Attributes
    ----------
    table : DataFrame
        One row per cell: :data:`INDEX_COLUMNS`.
    channels : list of str
        Channel order of the intensities' second axis.
    size : int
        Crop width and height.
    dtype : numpy.dtype
        Of the intensities (the channels' common dtype).
    """

    #: Crop files kept open at once (the least recently used is closed first).
    MAX_OPEN = 256

    def __init__(self, folder: str, table: pd.DataFrame, channels: list[str], size: int, dtype: np.dtype):
        self.folder = folder
        self.table = table.reset_index(drop=True)
        self.channels = channels
        self.size = size
        self.dtype = np.dtype(dtype)
        self._open: dict[str, CropFile] = {}

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return f"CropSet({len(self)} cells of {self.folder}, channels {self.channels}, size {self.size})"

    def _file(self, name: str) -> CropFile:
        """The crop file ``name``, opened once and kept open (at most :attr:`MAX_OPEN` of them)."""
        if name in self._open:
            self._open[name] = self._open.pop(name)  # most recently used last
            return self._open[name]
        path = os.path.join(self.folder, name)
        if not os.path.exists(path):
            raise CropStoreError(
                f"crop file {path}, listed in {index_name(os.path.basename(self.folder))}, is missing; "
                "run the workflow's crop step again"
            )
        if len(self._open) >= self.MAX_OPEN:
            self._open.pop(next(iter(self._open))).close()
        self._open[name] = CropFile(path)
        return self._open[name]

    def close(self) -> None:
        """Close the crop files this set has open."""
        for f in self._open.values():
            f.close()
        self._open.clear()

    def __enter__(self) -> CropSet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self, positions: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Intensities and masks of the cells at ``positions`` (rows of :attr:`table`), in that order."""
        positions = np.asarray(positions, np.int64)
        x = np.empty((len(positions), len(self.channels), self.size, self.size), self.dtype)
        m = np.empty((len(positions), self.size, self.size), np.uint8)
        rows = self.table.iloc[positions]
        for name, where in rows.groupby("file", sort=False).indices.items():
            x[where], m[where] = self._file(name).read(rows["offset"].to_numpy()[where])
        return x, m

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Intensities ``(channels, size, size)`` and mask ``(size, size)`` of cell ``i``."""
        x, m = self.read([i])
        return x[0], m[0]

    def batches(
        self, batch_size: int, shuffle: bool = False, seed: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, pd.DataFrame]]:
        """Batches of ``(intensities, masks, rows of the table)``, once over every cell.

        Parameters
        ----------
        batch_size : int
            Cells per batch (the last may be smaller).
        shuffle : bool
            Visit the cells in a random order.
        seed : int, optional
            Seed of that order.
        """
        order = np.random.default_rng(seed).permutation(len(self)) if shuffle else np.arange(len(self))
        for start in range(0, len(order), batch_size):
            positions = order[start : start + batch_size]
            x, m = self.read(positions)
            yield x, m, self.table.iloc[positions]

    def to_dask(self) -> tuple[object, object]:
        """Lazy dask arrays: intensities ``(n, channels, size, size)`` and masks ``(n, size, size)``.

        One chunk per crop file; computing a slice reads only the files it spans.
        """
        import dask
        import dask.array as da

        xs, ms = [], []
        by_file = self.table.groupby("file", sort=False).indices
        for name, where in by_file.items():
            offsets = self.table["offset"].to_numpy()[where]
            part = dask.delayed(_read_file, pure=True)(os.path.join(self.folder, name), offsets)
            k = len(where)
            xs.append(da.from_delayed(part[0], (k, len(self.channels), self.size, self.size), self.dtype))
            ms.append(da.from_delayed(part[1], (k, self.size, self.size), np.uint8))
        if not xs:
            return (
                da.zeros((0, len(self.channels), self.size, self.size), self.dtype),
                da.zeros((0, self.size, self.size), np.uint8),
            )
        # Rows of one file are contiguous when the table is in index order; restore the table's order otherwise.
        order = np.concatenate(list(by_file.values()))
        back = np.argsort(order, kind="stable")
        x, m = da.concatenate(xs), da.concatenate(ms)
        if not np.array_equal(back, np.arange(len(back))):
            x, m = x[back], m[back]
        return x, m


class _CellReader:
    """Reads rows of a dataset chunked one cell per chunk, chunk by chunk.

    Reading each chunk as it is stored (and inflating it here) is several times
    faster than HDF5's selection of scattered rows.
    """

    def __init__(self, dataset):
        self.dataset = dataset
        self.shape, self.dtype = dataset.shape[1:], dataset.dtype
        self.direct = dataset.chunks == (1, *self.shape) and dataset.compression in (None, "gzip")
        self.direct = self.direct and not dataset.fletcher32 and not dataset.scaleoffset
        self.deflated = dataset.compression == "gzip"
        self.shuffled = bool(dataset.shuffle) and self.dtype.itemsize > 1
        self.origin = (0,) * len(self.shape)

    def read(self, offsets: np.ndarray) -> np.ndarray:
        out = np.empty((len(offsets), *self.shape), self.dtype)
        if not len(offsets):
            return out
        if not self.direct:
            unique, inverse = np.unique(offsets, return_inverse=True)  # HDF5 wants increasing indices
            return self.dataset[unique][inverse]
        from .io.h5chunks import inflate

        read_chunk, flat = self.dataset.id.read_direct_chunk, out.reshape(len(offsets), -1)
        bytes_view = flat.view(np.uint8).reshape(len(offsets), -1)
        for k, i in enumerate(offsets.tolist()):
            _, data = read_chunk((i, *self.origin))
            if self.deflated:
                data = inflate(data, bytes_view.shape[1])
            if self.shuffled:  # bytes were stored plane by plane: first bytes of all values, then second bytes
                bytes_view[k].reshape(-1, self.dtype.itemsize)[:] = (
                    np.frombuffer(data, np.uint8).reshape(self.dtype.itemsize, -1).T
                )
            else:
                bytes_view[k] = np.frombuffer(data, np.uint8)
        return out


def _read_file(path: str, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with CropFile(path) as f:
        return f.read(offsets)


def open_crops(
    folder: str,
    wells: str | Sequence[str] | None = None,
    sites: int | Sequence[int] | None = None,
    labels: int | Sequence[int] | None = None,
    touches_border: bool | None = None,
) -> CropSet:
    """The single-cell crops of a plate folder, optionally only some wells, sites or labels.

    Parameters
    ----------
    folder : str
        The plate folder (holding ``<plate>_crops.parquet``).
    wells : str or list of str, optional
        Keep these wells (``"A01"``).
    sites : int or list of int, optional
        Keep these sites.
    labels : int or list of int, optional
        Keep these cell labels (ids in the image's label image).
    touches_border : bool, optional
        Keep only cells that touch (True) or do not touch (False) the image border.

    Returns
    -------
    CropSet
        Its ``table``, ``read``, ``batches``, ``crops[i]`` and ``to_dask()``.

    Raises
    ------
    CropStoreError
        Without the plate's crop index (the crop step has not run with the store format).
    """
    folder = os.path.abspath(folder)
    plate = os.path.basename(folder)
    path = os.path.join(folder, index_name(plate))
    if not os.path.exists(path):
        raise CropStoreError(
            f"no crop index {path}: run the workflow's crop step (--crop-format store, the default) on {folder}"
        )
    table = pd.read_parquet(path)
    keep = np.ones(len(table), bool)
    for column, wanted in (("well", _as_list(wells)), ("site", _as_list(sites)), ("label", _as_list(labels))):
        if wanted is not None:
            keep &= table[column].isin(wanted).to_numpy()
    if touches_border is not None:
        keep &= table["touches_border"].to_numpy().astype(bool) == bool(touches_border)
    # Channels, size and dtype from one crop file (the folder is listed only when the index is empty).
    first = os.path.join(folder, table["file"].iloc[0]) if len(table) else next(iter(crop_files(folder)), None)
    channels, size, dtype = [], 0, np.dtype(np.uint16)
    if first is not None:
        with CropFile(first) as f:
            channels, size, dtype = f.channels, f.size, np.result_type(*f.channel_dtypes)
    return CropSet(folder, table[keep], channels, size, dtype)


def png_names(label: int, channels: Sequence[str]) -> tuple[str, list[str]]:
    """File names of one cell's PNG crops: its mask and one per channel.

    Examples
    --------
    >>> png_names(7, ["dapi", "gfp"])
    ('7_mask.png', ['7_dapi.png', '7_gfp.png'])
    """
    return f"{label}_mask.png", [f"{label}_{channel}.png" for channel in channels]


def write_png(path: str, array: np.ndarray) -> None:
    """8- or 16-bit grayscale PNG (other dtypes are scaled into 16 bits; NaN and infinite pixels become 0)."""
    from PIL import Image

    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype not in (np.uint8, np.uint16):
        finite = np.isfinite(array)
        values = array[finite]
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        scaled = np.where(finite, (array - lo) / (hi - lo or 1) * 65535, 0)
        array = np.clip(scaled, 0, 65535).astype(np.uint16)
    Image.fromarray(array).save(path)


def write_png_folder(
    out: str, table: pd.DataFrame, intensities: np.ndarray, masks: np.ndarray, channels: Sequence[str], dtypes
) -> None:
    """One image's crops as PNG files plus ``metadata.csv`` in the folder ``out`` (created).

    The layout of ``--crop-format png``: ``<label>_<channel>.png``,
    ``<label>_mask.png`` (0/255) and ``metadata.csv``.
    """
    import csv

    os.makedirs(out)
    records = []
    for i, row in enumerate(table.itertuples(index=False)):
        mask_file, files = png_names(row.label, channels)
        write_png(os.path.join(out, mask_file), masks[i].astype(bool))
        for c, name in enumerate(files):
            write_png(os.path.join(out, name), intensities[i, c].astype(dtypes[c], copy=False))
        centers = np.round(np.array([row.centroid_y, row.centroid_x]), 3)
        bbox = [int(row.bbox_min_y), int(row.bbox_min_x), int(row.bbox_max_y), int(row.bbox_max_x)]
        records.append([row.plate, row.well, row.site, int(row.label), *centers, *bbox, int(row.touches_border)])
        records[-1] += [mask_file, *files]
    with open(os.path.join(out, "metadata.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(PNG_METADATA_COLUMNS + [f"{c}_file" for c in channels])
        writer.writerows(records)


def export_png(folder: str, dest: str, wells: str | Sequence[str] | None = None) -> list[str]:
    """Write a plate's crops from the store as PNG folders (the ``--crop-format png`` layout) under ``dest``.

    Parameters
    ----------
    folder : str
        The plate folder.
    dest : str
        Where the ``<image>.crops/`` folders go (created; existing ones are replaced).
    wells : str or list of str, optional
        Only these wells.

    Returns
    -------
    list of str
        The folders written.
    """
    from .state.atomic import atomic_path

    os.makedirs(dest, exist_ok=True)
    written = []
    with open_crops(folder, wells=wells) as crops:
        for name, rows in crops.table.groupby("file", sort=True):
            f = crops._file(name)
            intensities, masks = f.read(rows["offset"].to_numpy())
            out = os.path.join(dest, name[: -len(CROP_FILE_EXT)] + ".crops")
            with atomic_path(out) as tmp:
                write_png_folder(str(tmp), rows, intensities, masks, crops.channels, f.channel_dtypes)
            written.append(out)
    return written
