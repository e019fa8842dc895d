"""One helper for the I/O code's short-lived thread pools."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

#: Threads for compressing and decompressing chunks and converting table columns.
THREADS = min(8, os.cpu_count() or 1)


def thread_map(
    fn: Callable[[Any], Any], items: Iterable[Any], threads: int | None = None, parallel: bool = True
) -> list:
    """``[fn(item) for item in items]``, in a pool of threads when that pays.

    For work that releases the GIL (compression, Arrow). The pool is used only
    when ``parallel`` is true and there is more than one item: starting
    threads costs more than small work (one chunk, a table of a few rows).

    Examples
    --------
    >>> thread_map(abs, [-1, 2, -3])
    [1, 2, 3]
    """
    items = list(items)
    threads = min(threads or THREADS, len(items))
    if not parallel or threads <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, items))
