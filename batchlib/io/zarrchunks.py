"""Fast local Zarr (format 2 and 3): metadata and chunks written as the specs fix them.

zarr-python 3 routes every operation through its asyncio machinery, which
costs milliseconds per array, group or membership test, and writes the
whole metadata per attribute set (BENCHMARKS.md, ``bench/io.py``). For arrays in a local directory store the
layout is simple and fixed by the specs, so batchlib writes it directly:

- metadata: ``.zarray`` + ``.zattrs`` (format 2) or ``zarr.json`` (format 3)
  with the JSON zarr-python itself writes for the same array (the tests
  compare them), then the ``zarr.Array`` is built from that metadata
  without touching the store again;
- chunks: one file per chunk, named by its grid indices (format 2: joined
  with the dimension separator; format 3: the default ``c/i/j`` key
  encoding), holding the compressed C-order little-endian bytes of a
  full-size chunk (edge chunks padded with the fill value). They are encoded
  with the array's compressor (blosc, zstd, gzip; all release the GIL) in a
  shared thread pool.

Anything else (other stores, filters, sharding, big-endian or structured
dtypes, nested names) takes zarr-python's own path.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

import numpy as np

from ..state.atomic import atomic_write
from .threads import chunk_pool, run_all

#: Numpy dtype kinds written directly (bool, integers, floats).
_KINDS = "biuf"


def local_dir(node: Any) -> str | None:
    """The directory of a zarr group or array in a writable local store, else None."""
    from zarr.storage import LocalStore

    store = node.store
    if not isinstance(store, LocalStore) or store.read_only:
        return None
    return os.path.join(str(store.root), node.path)


def _simple_name(name: str) -> bool:
    return bool(name) and "/" not in name and name not in (".", "..") and not name.startswith("__")


def contains(group: Any, key: str) -> bool | None:
    """Whether ``key`` is a member of a local zarr ``group`` (from the files), or None if unknown here."""
    root = local_dir(group)
    parts = key.strip("/").split("/")
    if root is None or not all(_simple_name(p) for p in parts):
        return None
    path = os.path.join(root, *parts)
    names = (".zarray", ".zgroup") if group.metadata.zarr_format == 2 else ("zarr.json",)
    return any(os.path.isfile(os.path.join(path, n)) for n in names)


def _write_json(path: str, content: dict) -> None:
    with open(path, "w") as f:
        json.dump(content, f, indent=2)


def create_group(group: Any, name: str) -> Any | None:
    """A new member group ``name`` of a local zarr ``group``, or None if zarr must create it."""
    from zarr import Group
    from zarr.core.group import AsyncGroup, GroupMetadata
    from zarr.storage import StorePath

    root = local_dir(group)
    if root is None or not _simple_name(name) or contains(group, name) is not False:
        return None
    fmt = group.metadata.zarr_format
    path = os.path.join(root, name)
    os.makedirs(path, exist_ok=True)
    # Workers writing fields of one well may create its group at the same time: the file that makes
    # the folder a group (what `contains` looks for) is written last and whole, so no one reads it half-written.
    if fmt == 2:
        _write_json(os.path.join(path, ".zattrs"), {})
        atomic_write(os.path.join(path, ".zgroup"), json.dumps({"zarr_format": 2}, indent=2), fsync=False)
    else:
        group_json = {"attributes": {}, "zarr_format": 3, "node_type": "group"}
        atomic_write(os.path.join(path, "zarr.json"), json.dumps(group_json, indent=2), fsync=False)
    store_path = StorePath(group.store, f"{group.path}/{name}" if group.path else name)
    return Group(AsyncGroup(metadata=GroupMetadata(zarr_format=fmt), store_path=store_path))


def write_group_attributes(group: Any, attributes: dict) -> bool:
    """Replace the attributes of a local zarr ``group`` by writing its metadata file; False if not local."""
    root = local_dir(group)
    if root is None:
        return False
    if group.metadata.zarr_format == 2:
        _write_json(os.path.join(root, ".zattrs"), attributes)
    else:
        path = os.path.join(root, "zarr.json")
        with open(path) as f:
            metadata = json.load(f)
        metadata["attributes"] = attributes
        _write_json(path, metadata)
    return True


def _fill_value(dtype: np.dtype) -> Any:
    return False if dtype.kind == "b" else 0.0 if dtype.kind == "f" else 0


def array_metadata(
    zarr_format: int,
    shape: tuple,
    dtype: np.dtype,
    chunks: tuple,
    compression: str | None,
    level: int | None,
    dimension_separator: str = ".",
    dimension_names: list[str] | None = None,
) -> dict | None:
    """The metadata document zarr-python writes for such an array, or None if not written here.

    ``dimension_separator`` applies to format 2 (``"/"``: nested chunk keys,
    as OME-NGFF 0.4 asks), ``dimension_names`` to format 3.
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in _KINDS or dtype.byteorder == ">" or compression not in (None, "none", "blosc", "gzip", "zstd"):
        return None
    if compression in (None, "none"):
        compression = None
    level = level or (5 if compression == "blosc" else 1)
    if zarr_format == 2:
        compressor = {
            None: None,
            "blosc": {"id": "blosc", "cname": "lz4", "clevel": level, "shuffle": 1, "blocksize": 0},
            "gzip": {"id": "gzip", "level": level},
            "zstd": {"id": "zstd", "level": level},
        }[compression]
        return {
            "shape": list(shape),
            "chunks": list(chunks),
            "dtype": dtype.str,
            "fill_value": _fill_value(dtype),
            "order": "C",
            "filters": None,
            "dimension_separator": dimension_separator,
            "compressor": compressor,
            "zarr_format": 2,
        }
    codecs = [{"name": "bytes", "configuration": {"endian": "little"}} if dtype.itemsize > 1 else {"name": "bytes"}]
    if compression == "blosc":
        config = {"typesize": dtype.itemsize, "cname": "lz4", "clevel": level, "shuffle": "shuffle", "blocksize": 0}
        codecs.append({"name": "blosc", "configuration": config})
    elif compression == "gzip":
        codecs.append({"name": "gzip", "configuration": {"level": level}})
    elif compression == "zstd":
        codecs.append({"name": "zstd", "configuration": {"level": level, "checksum": False}})
    meta = {
        "shape": list(shape),
        "data_type": dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": _fill_value(dtype),
        "codecs": codecs,
        "attributes": {},
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }
    if dimension_names is not None:
        meta["dimension_names"] = list(dimension_names)
    return meta


def create_array(
    group: Any,
    name: str,
    shape,
    dtype,
    chunks,
    compression,
    level,
    dimension_separator: str = ".",
    dimension_names: list[str] | None = None,
) -> Any | None:
    """A new array ``name`` in a local zarr ``group``, its metadata written directly; None if zarr must."""
    from zarr import Array
    from zarr.core.array import AsyncArray
    from zarr.storage import StorePath

    root = local_dir(group)
    if root is None or not _simple_name(name) or chunks is None or len(chunks) != len(shape) or not shape:
        return None
    fmt = group.metadata.zarr_format
    meta = array_metadata(fmt, shape, dtype, chunks, compression, level, dimension_separator, dimension_names)
    if meta is None or contains(group, name) is not False:
        return None
    path = os.path.join(root, name)
    os.makedirs(path, exist_ok=True)
    if fmt == 2:
        _write_json(os.path.join(path, ".zarray"), meta)
        _write_json(os.path.join(path, ".zattrs"), {})
    else:
        _write_json(os.path.join(path, "zarr.json"), meta)
    store_path = StorePath(group.store, f"{group.path}/{name}" if group.path else name)
    return Array(AsyncArray(metadata=meta, store_path=store_path))


def _encoder(array: Any):
    """(encode function, chunk key function) for a local array written here, or None."""
    meta = array.metadata
    dtype = np.dtype(array.dtype)
    if dtype.kind not in _KINDS or dtype.byteorder == ">":
        return None
    if meta.zarr_format == 2:
        if meta.filters or meta.order != "C":
            return None
        compressor, separator = meta.compressor, meta.dimension_separator

        def encode(raw: np.ndarray) -> bytes:
            return compressor.encode(raw) if compressor is not None else raw.tobytes()

        return encode, lambda index: separator.join(map(str, index))
    return _encoder_v3(meta, dtype)


def _encoder_v3(meta: Any, dtype: np.dtype):
    from numcodecs import Blosc, GZip, Zstd
    from zarr.codecs import BloscCodec, BytesCodec, GzipCodec, ZstdCodec
    from zarr.core.chunk_grids import RegularChunkGrid
    from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding

    codecs = list(meta.codecs)
    encoding = meta.chunk_key_encoding
    if (
        not isinstance(meta.chunk_grid, RegularChunkGrid)
        or not isinstance(encoding, DefaultChunkKeyEncoding)
        or meta.storage_transformers
        or not codecs
        or not isinstance(codecs[0], BytesCodec)
        or (dtype.itemsize > 1 and codecs[0].endian is not None and codecs[0].endian.value != "little")
        or len(codecs) > 2
    ):
        return None
    compressor = None
    if len(codecs) == 2:
        codec = codecs[1]
        if isinstance(codec, BloscCodec):
            shuffle = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE, "bitshuffle": Blosc.BITSHUFFLE}
            if codec.typesize not in (None, dtype.itemsize):
                return None
            compressor = Blosc(codec.cname.value, codec.clevel, shuffle[codec.shuffle.value], codec.blocksize)
        elif isinstance(codec, GzipCodec):
            compressor = GZip(codec.level)
        elif isinstance(codec, ZstdCodec):
            compressor = Zstd(codec.level, checksum=codec.checksum)
        else:
            return None

    def encode(raw: np.ndarray) -> bytes:
        return compressor.encode(raw) if compressor is not None else raw.tobytes()

    separator = encoding.separator
    return encode, lambda index: separator.join(["c", *map(str, index)])


def write_chunks(array, data: np.ndarray, offset: tuple[int, ...] | None = None, threads: int = 2) -> bool:
    """Write ``data`` at ``offset`` chunk by chunk in threads; False if this array needs zarr's own path."""
    root = local_dir(array)
    offset = tuple(offset) if offset is not None else (0,) * data.ndim
    chunks = tuple(array.chunks)
    aligned = all(
        o % c == 0 and (s % c == 0 or o + s == n) for o, s, c, n in zip(offset, data.shape, chunks, array.shape)
    )
    if root is None or not aligned or data.dtype != array.dtype or data.ndim == 0:
        return False
    coder = _encoder(array)
    if coder is None:
        return False
    encode, key = coder
    fill = array.metadata.fill_value
    fill = 0 if fill is None else fill

    origins = list(itertools.product(*(range(0, s, c) for s, c in zip(data.shape, chunks))))
    paths = [os.path.join(root, key([(o + p) // c for o, p, c in zip(origin, offset, chunks)])) for origin in origins]
    for directory in {os.path.dirname(p) for p in paths}:  # once, not per chunk
        os.makedirs(directory, exist_ok=True)

    def write(item: tuple[tuple[int, ...], str]) -> None:
        origin, path = item
        block = data[tuple(slice(o, o + c) for o, c in zip(origin, chunks))]
        if block.shape != chunks:  # edge chunks are stored full size
            padded = np.full(chunks, fill, dtype=data.dtype)
            padded[tuple(slice(0, s) for s in block.shape)] = block
            block = padded
        payload = encode(np.ascontiguousarray(block))
        with open(path, "wb") as f:
            f.write(payload)

    run_all(chunk_pool(threads), write, zip(origins, paths))
    return True
