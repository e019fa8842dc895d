"""The container formats behind :func:`batchlib.io.open_file`: one small class per backend.

A :class:`Backend` knows how to open its files, tell groups from datasets and
create datasets with compression; :data:`BACKENDS` maps file extensions
(``.h5``/``.hdf5``, ``.n5``, ``.zarr``) to them. The h5py-like
:class:`batchlib.io.containers.Group` on top is the same for all.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ContainerError
from .threads import THREADS

#: Compression of new datasets when none is given, by backend (chosen with bench/io.py):
#: gzip + shuffle for HDF5 (what the plate viewer's Java HDF5 decodes), blosc-lz4 + shuffle for N5 and Zarr.
DEFAULT_COMPRESSION = {"h5": ("gzip", 1), "n5": ("blosc", 5), "zarr": ("blosc", 5)}
#: Zarr format of newly created ``.zarr`` containers (2 or 3).
DEFAULT_ZARR_FORMAT = 2


class Backend:
    """How one container format opens files and creates datasets."""

    name = ""
    extensions: tuple[str, ...] = ()
    #: Chunk writes may run in the background (see :func:`deferred_writes`).
    background_writes = False

    def open(self, path: str, mode: str, **kwargs: Any) -> Any:
        raise NotImplementedError

    def load(self) -> None:
        """Import the libraries the backend works with (a watcher does it before the first image)."""

    def is_group(self, node: Any) -> bool:
        raise NotImplementedError

    def dataset(self, node: Any) -> Any:
        """A dataset as handed to callers (a backend may tune it first)."""
        return node

    def contains(self, group: Any, key: str) -> bool:
        return key in group

    def create_group(self, group: Any, name: str) -> Any:
        return group.create_group(name)

    def update_attrs(self, node: Any, attrs: dict) -> None:
        """Set several attributes of a group or dataset (one metadata write where the backend allows)."""
        node.attrs.update(attrs)

    def create_dataset(
        self,
        group: Any,
        name: str,
        shape: tuple,
        dtype: Any,
        chunks: tuple | None,
        compression: str | None,
        level: int | None,
    ) -> Any:
        raise NotImplementedError

    def write(self, dataset: Any, data: np.ndarray, offset: tuple[int, ...] | None = None) -> None:
        """Write ``data`` into ``dataset`` at ``offset`` (default: the origin)."""
        offset = offset or (0,) * data.ndim
        dataset[tuple(slice(o, o + s) for o, s in zip(offset, data.shape))] = data

    def read(self, dataset: Any) -> np.ndarray:
        """All of ``dataset`` as a numpy array."""
        return dataset[...]

    def read_later(self, dataset: Any) -> Callable[[], np.ndarray]:
        """Read what must be read from the file now; return a function giving the array (in any thread).

        By default everything is read now; HDF5 leaves the decompressing to the function.
        """
        data = self.read(dataset)
        return lambda: data

    def close(self, handle: Any) -> None:
        close = getattr(handle, "close", None)
        if close is not None:
            close()


class H5Backend(Backend):
    """HDF5 through h5py. Only gzip or no compression, so Java HDF5 (Fiji) reads it."""

    name, extensions = "h5", (".h5", ".hdf5", ".hdf")

    def open(self, path: str, mode: str, **kwargs: Any) -> Any:
        import h5py

        return h5py.File(path, mode)

    def load(self) -> None:
        import h5py  # noqa: F401

        from . import h5chunks  # noqa: F401  (ISA-L)

    def is_group(self, node: Any) -> bool:
        import h5py

        return isinstance(node, h5py.Group)

    def create_dataset(self, group, name, shape, dtype, chunks, compression, level):
        if compression not in (None, "none", "gzip"):
            raise ContainerError(f"HDF5 containers use 'gzip' or no compression (viewer-readable), got {compression!r}")
        gzip = compression == "gzip"
        return group.create_dataset(
            name,
            shape=shape,
            dtype=dtype,
            chunks=chunks,
            compression="gzip" if gzip else None,
            compression_opts=level if gzip else None,
            shuffle=gzip and np.dtype(dtype).itemsize > 1,
        )

    def write(self, dataset: Any, data: np.ndarray, offset: tuple[int, ...] | None = None) -> None:
        from .h5chunks import write_compressed

        write_compressed(dataset, data, offset)

    def read(self, dataset: Any) -> np.ndarray:
        from .h5chunks import read_compressed

        return read_compressed(dataset)

    def read_later(self, dataset: Any) -> Callable[[], np.ndarray]:
        from .h5chunks import read_compressed_later

        return read_compressed_later(dataset)


class N5Backend(Backend):
    """N5 through z5py."""

    name, extensions = "n5", (".n5",)
    background_writes = True

    def open(self, path: str, mode: str, **kwargs: Any) -> Any:
        import z5py

        if mode == "r" and not os.path.exists(path):
            raise FileNotFoundError(path)
        if mode in ("r", "r+") and not os.path.exists(os.path.join(path, "attributes.json")):
            raise ContainerError(f"{path} is not an N5 container (no attributes.json)")
        return z5py.File(path, mode="a" if mode == "r+" else mode)

    def load(self) -> None:
        import z5py  # noqa: F401

        from . import n5chunks  # noqa: F401

    def is_group(self, node: Any) -> bool:
        import z5py

        return isinstance(node, z5py.Group)

    def dataset(self, node: Any) -> Any:
        node.n_threads = THREADS  # z5py (de)compresses chunks in parallel
        return node

    def write(self, dataset: Any, data: np.ndarray, offset: tuple[int, ...] | None = None) -> None:
        from .n5chunks import write_chunks

        if not write_chunks(dataset, data, offset, THREADS):
            super().write(dataset, data, offset)

    def create_dataset(self, group, name, shape, dtype, chunks, compression, level):
        if 0 in shape:  # z5py crashes the process on empty datasets
            raise ContainerError(f"N5 cannot store the empty dataset {name!r} of shape {shape}")
        compression = "raw" if compression in (None, "none") else compression
        if compression not in ("raw", "gzip", "lz4", "zstd", "blosc", "xz", "bzip2"):
            raise ContainerError(f"N5 containers use gzip, lz4, zstd, blosc, xz, bzip2 or none, got {compression!r}")
        options = {"level": level} if compression == "gzip" and level is not None else {}
        if compression == "blosc":  # lz4 + byte shuffle, as for Zarr
            options = {"codec": "lz4", "clevel": level or 5, "shuffle": 1}
        node = group.create_dataset(
            name, shape=shape, dtype=dtype, chunks=chunks or shape, compression=compression, **options
        )
        return self.dataset(node)


class ZarrBackend(Backend):
    """Zarr (format 2 or 3) through zarr-python."""

    name, extensions = "zarr", (".zarr",)
    background_writes = True

    def open(self, path: str, mode: str, zarr_format: int | None = None, **kwargs: Any) -> Any:
        import zarr

        if mode in ("r", "r+") and not os.path.exists(path):
            raise FileNotFoundError(path)
        create_format = zarr_format or DEFAULT_ZARR_FORMAT
        if mode in ("a", "w", "w-", "x") and not os.path.exists(path):
            return zarr.open_group(path, mode=mode, zarr_format=create_format)
        return zarr.open_group(path, mode=mode, zarr_format=zarr_format)

    def load(self) -> None:
        import zarr  # noqa: F401

    def is_group(self, node: Any) -> bool:
        import zarr

        return isinstance(node, zarr.Group)

    def contains(self, group: Any, key: str) -> bool:
        from .zarrchunks import contains

        found = contains(group, key)  # local stores: from the files, without zarr's event loop
        return key in group if found is None else found

    def create_group(self, group: Any, name: str) -> Any:
        from .zarrchunks import create_group

        created = create_group(group, name)  # (a zarr group with no members is falsy)
        return created if created is not None else group.create_group(name)

    def update_attrs(self, node: Any, attrs: dict) -> None:
        node.update_attributes(attrs)  # one metadata write (attrs.update writes once per key)

    def create_dataset(self, group, name, shape, dtype, chunks, compression, level):
        from .zarrchunks import create_array

        if compression not in (None, "none", "gzip", "zstd", "blosc"):
            raise ContainerError(f"zarr containers use 'blosc', 'gzip', 'zstd' or no compression, got {compression!r}")
        array = create_array(group, name, shape, dtype, chunks, compression, level)  # local: metadata written here
        if array is not None:
            return array
        fmt = group.metadata.zarr_format
        compressors = None if compression in (None, "none") else _zarr_codec(fmt, compression, level)
        extra = {"dimension_names": None} if fmt == 3 else {}
        return group.create_array(
            name, shape=shape, dtype=dtype, chunks=chunks or shape, compressors=compressors, **extra
        )

    def write(self, dataset: Any, data: np.ndarray, offset: tuple[int, ...] | None = None) -> None:
        from .zarrchunks import write_chunks

        if not write_chunks(dataset, data, offset, THREADS):
            super().write(dataset, data, offset)

    def close(self, handle: Any) -> None:
        pass  # zarr writes through at once; nothing to close


def _zarr_codec(zarr_format: int, compression: str, level: int | None) -> Any:
    if zarr_format == 2:
        from numcodecs import Blosc, GZip, Zstd

        if compression == "blosc":
            return Blosc("lz4", level or 5, Blosc.SHUFFLE)
        return GZip(level or 1) if compression == "gzip" else Zstd(level or 1)
    from zarr import codecs

    if compression == "blosc":
        return codecs.BloscCodec(cname="lz4", clevel=level or 5, shuffle="shuffle")
    return codecs.GzipCodec(level=level or 1) if compression == "gzip" else codecs.ZstdCodec(level=level or 1)


BACKENDS: dict[str, Backend] = {}
for _backend in (H5Backend(), N5Backend(), ZarrBackend()):
    for _ext in _backend.extensions:
        BACKENDS[_ext] = _backend
CONTAINER_EXTENSIONS = tuple(BACKENDS)


def backend_of(path: str | os.PathLike) -> Backend:
    """The backend for a path, by its extension."""
    suffix = Path(path).suffix.lower()
    backend = BACKENDS.get(suffix)
    if backend is None:
        raise ContainerError(
            f"cannot open {path}: unknown container extension {suffix!r}; expected one of {', '.join(BACKENDS)}"
        )
    return backend


def is_container(path: str | os.PathLike) -> bool:
    """True if ``path`` has the extension of a container backend."""
    return Path(path).suffix.lower() in BACKENDS


def default_chunks(shape: tuple[int, ...], target: int = 512) -> tuple[int, ...]:
    """Chunks of at most ``target`` along the last two axes, 1 along others.

    Examples
    --------
    >>> default_chunks((3, 2048, 2048))
    (1, 512, 512)
    >>> default_chunks((100,))
    (100,)
    """
    if len(shape) == 1:
        return (min(shape[0], 1 << 20),)
    lead = (1,) * (len(shape) - 2)
    return lead + tuple(max(1, min(s, target)) for s in shape[-2:])
