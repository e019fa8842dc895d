"""Fast Zarr (format 2) writes: chunks encoded and written in parallel threads.

zarr-python 3 routes every chunk through its asyncio machinery. For a local
Zarr 2 array the layout is simple and fixed by the spec (one file per chunk,
named by its indices joined with the dimension separator, holding the
compressed C-order bytes of a full-size chunk), so whole arrays are written
here directly: each chunk is encoded with the array's own compressor (blosc
and zstd release the GIL) and written from a thread pool. Arrays with filters,
other stores or Zarr 3 take zarr's own path.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def _local_root(array) -> str | None:
    from zarr.storage import LocalStore

    store = array.store
    if not isinstance(store, LocalStore) or array.metadata.zarr_format != 2:
        return None
    return os.path.join(str(store.root), array.path)


def write_chunks(array, data: np.ndarray, offset: tuple[int, ...] | None = None, threads: int = 2) -> bool:
    """Write ``data`` at ``offset`` chunk by chunk in threads; False if this array needs zarr's own path."""
    meta = array.metadata
    root = _local_root(array)
    offset = tuple(offset) if offset is not None else (0,) * data.ndim
    chunks = tuple(meta.chunks)
    aligned = all(
        o % c == 0 and (s % c == 0 or o + s == n) for o, s, c, n in zip(offset, data.shape, chunks, array.shape)
    )
    if root is None or meta.filters or meta.order != "C" or not aligned or data.dtype != array.dtype:
        return False
    compressor, separator = meta.compressor, meta.dimension_separator
    fill = meta.fill_value if meta.fill_value is not None else 0

    def write(origin: tuple[int, ...]) -> None:
        block = data[tuple(slice(o, o + c) for o, c in zip(origin, chunks))]
        if block.shape != chunks:  # edge chunks are stored full size
            padded = np.full(chunks, fill, dtype=data.dtype)
            padded[tuple(slice(0, s) for s in block.shape)] = block
            block = padded
        raw = np.ascontiguousarray(block)
        payload = compressor.encode(raw) if compressor is not None else raw.tobytes()
        index = [(o + p) // c for o, p, c in zip(origin, offset, chunks)]
        path = os.path.join(root, separator.join(map(str, index)))
        if separator == "/":
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(payload)

    origins = list(itertools.product(*(range(0, s, c) for s, c in zip(data.shape, chunks))))
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, origins))
    return True
