"""``open_file``: one h5py-like API over HDF5, N5 and Zarr containers.

Every backend is a small class that knows how to open its files and create
datasets; :class:`Group` gives jobs the same interface on all of them::

    with open_file("a.h5", "a") as f:          # or a.n5, a.zarr
        f.create_dataset("raw/s0", data=image, chunks=(512, 512))
        f["raw"].attrs["Color"] = "White"
        "raw/s0" in f, f["raw/s0"][:100, :100], f["raw/s0"].shape
        del f["raw"]

Datasets are the backend's own array objects (``h5py.Dataset``,
``z5py.Dataset``, ``zarr.Array``): all support numpy slicing, ``shape``,
``dtype``, ``chunks`` and ``attrs``. Groups are wrapped, so creating
datasets, ``in``, ``del``, ``require_*`` and context managers behave the same.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import ContainerError
from .backends import DEFAULT_COMPRESSION, Backend, backend_of, default_chunks


class Group:
    """An h5py-like group of any backend (the file itself is the root group)."""

    def __init__(self, native: Any, backend: Backend, handle: Any = None, path: str = ""):
        self.native = native
        self.backend = backend
        self._handle = handle
        self.filename = path

    # -- mapping
    def __getitem__(self, key: str) -> Any:
        try:
            node = self.native[key]
        except KeyError:
            raise KeyError(f"{key!r} not found in {self.filename}") from None
        if self.backend.is_group(node):
            return Group(node, self.backend, None, self.filename)
        return self.backend.dataset(node)

    def __contains__(self, key: str) -> bool:
        try:
            return self.backend.contains(self.native, key)
        except (KeyError, ValueError):
            return False

    def __delitem__(self, key: str) -> None:
        del self.native[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> list[str]:
        """Names of the members, sorted."""
        return sorted(self.native.keys())

    def items(self) -> list[tuple[str, Any]]:
        return [(k, self[k]) for k in self.keys()]

    @property
    def attrs(self) -> Any:
        """The group's attributes (a mutable mapping)."""
        return self.native.attrs

    # -- creation
    def create_group(self, name: str) -> Group:
        return Group(self.backend.create_group(self.native, name), self.backend, None, self.filename)

    def update_attrs(self, attrs: dict) -> None:
        """Set several attributes at once (one metadata write where the backend allows)."""
        self.backend.update_attrs(self.native, attrs)

    def require_group(self, name: str) -> Group:
        if name in self:
            node = self[name]
            if not isinstance(node, Group):
                raise ContainerError(f"{name!r} in {self.filename} is a dataset, expected a group")
            return node
        return self.create_group(name)

    def create_dataset(
        self,
        name: str,
        data: Any = None,
        shape: tuple | None = None,
        dtype: Any = None,
        chunks: tuple | None = None,
        compression: str | None = "default",
        compression_opts: int | None = None,
    ) -> Any:
        """Create a dataset, optionally filled with ``data``.

        Parameters
        ----------
        name : str
            Path of the new dataset (intermediate groups are created).
        data : array-like, optional
            Content; gives shape and dtype when those are not given.
        shape, dtype : optional
            Shape and dtype of an empty dataset.
        chunks : tuple, optional
            Chunk shape; default :func:`default_chunks`.
        compression : str or None
            ``"gzip"`` (all), ``"blosc"`` (lz4 + shuffle), ``"zstd"`` (zarr, n5),
            ``"lz4"`` (n5), None for none; ``"default"`` takes the backend's
            default (:data:`DEFAULT_COMPRESSION`).
        compression_opts : int, optional
            Compression level.
        """
        if data is not None:
            data = np.asarray(data)
            shape = data.shape if shape is None else shape
            dtype = data.dtype if dtype is None else dtype
        if shape is None or dtype is None:
            raise ContainerError(f"create_dataset({name!r}) in {self.filename} needs data or shape and dtype")
        shape = tuple(int(s) for s in shape)
        if compression == "default":
            compression, default_level = DEFAULT_COMPRESSION[self.backend.name]
            compression_opts = compression_opts if compression_opts is not None else default_level
        if name in self:
            raise ContainerError(f"{name!r} already exists in {self.filename}; delete it first or use require_dataset")
        chunks = tuple(chunks) if chunks is not None else default_chunks(shape) if shape else None
        if chunks is not None:
            chunks = tuple(max(1, min(c, s)) for c, s in zip(chunks, shape))
        if 0 in shape and self.backend.name == "h5":
            chunks, compression = None, None  # HDF5 cannot chunk an empty dataset
        dataset = self.backend.create_dataset(
            self.native, name, shape, np.dtype(dtype), chunks, compression, compression_opts
        )
        if data is not None and data.size:
            self.backend.write(dataset, data.astype(dtype, copy=False))
        return dataset

    def require_dataset(self, name: str, shape: tuple, dtype: Any, **kwargs: Any) -> Any:
        """The dataset ``name`` if it exists with this shape and dtype, else a new one."""
        if name in self:
            dataset = self[name]
            if tuple(dataset.shape) != tuple(shape) or np.dtype(dataset.dtype) != np.dtype(dtype):
                raise ContainerError(
                    f"{name!r} in {self.filename} has shape {tuple(dataset.shape)} and dtype {dataset.dtype}, "
                    f"expected {tuple(shape)} and {np.dtype(dtype)}; delete it to recreate it"
                )
            return dataset
        return self.create_dataset(name, shape=shape, dtype=dtype, **kwargs)

    # -- life cycle
    def close(self) -> None:
        if self._handle is not None:
            self.backend.close(self._handle)
            self._handle = None

    def __enter__(self) -> Group:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<batchlib {self.backend.name} group {getattr(self.native, 'name', '/')} of {self.filename}>"


def open_file(path: str | os.PathLike, mode: str = "a", **kwargs: Any) -> Group:
    """Open a container with the backend its extension names.

    Parameters
    ----------
    path : path-like
        ``.h5``/``.hdf5``/``.hdf`` (HDF5), ``.n5`` (N5) or ``.zarr`` (Zarr).
    mode : str
        ``"r"`` read only, ``"r+"`` read/write (must exist), ``"a"``
        read/write (create if missing), ``"w"`` create (truncate).
    **kwargs
        Backend options: ``zarr_format`` (2 or 3) for new ``.zarr`` files.

    Returns
    -------
    Group
        The root group, usable as a context manager.

    Raises
    ------
    ContainerError
        If the extension is unknown or the file cannot be opened (missing,
        truncated, not a container); the message names the file.

    Examples
    --------
    >>> import tempfile, os, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "a.zarr")
    >>> with open_file(path, "w") as f:
    ...     _ = f.create_dataset("raw/s0", data=np.arange(6).reshape(2, 3))
    >>> with open_file(path, "r") as f:
    ...     f["raw/s0"][1].tolist(), "raw" in f, f.keys()
    ([3, 4, 5], True, ['raw'])
    """
    path = os.fspath(path)
    backend = backend_of(path)
    try:
        handle = backend.open(path, mode, **kwargs)
    except ContainerError:
        raise
    except Exception as err:  # each library raises its own types for a bad file
        raise ContainerError(f"cannot open container {path} (mode {mode!r}): {type(err).__name__}: {err}") from err
    return Group(handle, backend, handle, path)
