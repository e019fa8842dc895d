"""Fast N5 writes: gzip (ISA-L) or blosc chunks compressed in parallel threads.

z5py compresses with zlib. N5's chunk format is fixed by the spec: a header
(mode 0, the number of dimensions and the chunk's actual size per dimension,
big-endian, in N5's reversed axis order), then the compressed big-endian
data; the chunk's path is its grid index in N5 order. Gzip and blosc chunks
are written here that way from a thread pool: gzip compressed with ISA-L
(the gzip stream format n5-java and z5py read), blosc as one blosc frame (the
n5-blosc format, read by z5py and by n5-java with the n5-blosc codec). Other
codecs take z5py's path.
"""

from __future__ import annotations

import itertools
import os
import struct

import numpy as np

from .threads import chunk_pool, run_all

try:
    from isal import isal_zlib as _zlib

    _MAX_LEVEL = 3
except ImportError:  # pragma: no cover - isal is a dependency
    import zlib as _zlib

    _MAX_LEVEL = 9

_GZIP_WBITS = 16 + 15  # gzip container, as N5's GzipCompression writes by default


def _encoder(dataset):
    """``bytes_of(block) -> payload`` for the dataset's codec, or None if z5py must write it."""
    if dataset.compression not in ("gzip", "blosc"):
        return None
    options = dataset.compression_opts or {}  # (z5py raises here for raw datasets)
    if dataset.compression == "gzip":
        level = min(options.get("level", 5), _MAX_LEVEL)
        return lambda block: _zlib.compress(block, level, _GZIP_WBITS)
    from numcodecs import blosc

    cname, clevel = options.get("codec", "lz4").encode(), options.get("level", 5)
    shuffle = options.get("shuffle", 1)
    # The n5-blosc format: one blosc frame of the chunk's big-endian bytes (typesize from the dtype).
    return lambda block: blosc.compress(block, cname, clevel, shuffle)


def write_chunks(dataset, data: np.ndarray, offset: tuple[int, ...] | None = None, threads: int = 2) -> bool:
    """Write ``data`` at ``offset`` of a gzip or blosc z5py N5 ``dataset``; False if it needs z5py's own path."""
    offset = tuple(offset) if offset is not None else (0,) * data.ndim
    chunks = tuple(dataset.chunks)
    aligned = all(
        o % c == 0 and (s % c == 0 or o + s == n) for o, s, c, n in zip(offset, data.shape, chunks, dataset.shape)
    )
    encode = _encoder(dataset)
    if encode is None or not aligned or dataset.is_zarr or data.dtype != dataset.dtype:
        return False
    root = os.path.join(dataset.file.filename, dataset.name.lstrip("/"))
    big_endian = data.dtype.newbyteorder(">")

    origins = list(itertools.product(*(range(0, s, c) for s, c in zip(data.shape, chunks))))
    paths = [
        os.path.join(root, *map(str, reversed([(o + p) // c for o, p, c in zip(origin, offset, chunks)])))
        for origin in origins
    ]
    for directory in {os.path.dirname(p) for p in paths}:  # once, not per chunk
        os.makedirs(directory, exist_ok=True)

    def write(item: tuple[tuple[int, ...], str]) -> None:
        origin, path = item
        block = data[tuple(slice(o, o + c) for o, c in zip(origin, chunks))]
        header = struct.pack(f">HH{block.ndim}I", 0, block.ndim, *reversed(block.shape))
        payload = encode(np.ascontiguousarray(block, dtype=big_endian))
        with open(path, "wb") as f:
            f.write(header)
            f.write(payload)

    run_all(chunk_pool(threads), write, zip(origins, paths))
    return True
