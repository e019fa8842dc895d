"""The I/O code's threads: the shared chunk pool, deferred chunk writes, and short-lived pools."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

#: Threads for compressing and decompressing chunks and converting table columns.
THREADS = min(8, os.cpu_count() or 1)
#: How many ``nice`` steps below its process a thread that works ahead runs (:func:`run_behind`).
BEHIND_NICENESS = 10


def run_behind() -> None:
    """Lower the calling thread's scheduling priority, so that it runs on cycles others leave idle.

    For a thread that works ahead of a compute-bound one: StarDist's I/O
    thread reads and sizes the next image and writes the last labels while
    the model predicts. At the process's own priority it preempts the model's
    threads, and a parallel TensorFlow operation waits for its slowest part;
    ``nice``-d, it fills the gaps the model leaves (its single-threaded
    steps), and when the model waits for it, nothing else competes. Linux
    only (a thread's own niceness); elsewhere, and where refused, nothing
    changes. A thread cannot take the priority back without privileges: call
    it in threads that end with their pool (a ``ThreadPoolExecutor``'s
    ``initializer``).
    """
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        niceness = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, niceness + BEHIND_NICENESS))
    except OSError:  # a sandbox that forbids it: the thread runs at the usual priority
        pass


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


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (process id, threads, pool)
_POOL_LOCK = threading.Lock()


def chunk_pool(threads: int = THREADS) -> ThreadPoolExecutor:
    """The shared thread pool that (de)compresses chunks (one per process: not inherited across fork)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[:2] != (os.getpid(), threads):
            if _POOL is not None and _POOL[0] == os.getpid():
                _POOL[2].shutdown(wait=False)  # queued jobs still run
            _POOL = (os.getpid(), threads, ThreadPoolExecutor(threads, thread_name_prefix="batchlib-chunks"))
        return _POOL[2]


_DEFERRED = threading.local()  # .futures: chunk writes of the current deferred_writes() block


@contextmanager
def deferred_writes() -> Iterator[None]:
    """Let chunk writes of one-file-per-chunk backends (N5, Zarr) finish in the background.

    Inside the block, ``create_dataset(data=...)`` on those backends returns
    once its chunks are queued in :func:`chunk_pool`, so the caller can
    compute the next array while they are compressed and written (HDF5
    writes stay synchronous: one writer per file). At the end of the block
    every queued write has finished; the first error, if any, is raised.
    The arrays handed to ``create_dataset`` must not change until then.
    """
    if getattr(_DEFERRED, "futures", None) is not None:  # nested: the outer block waits
        yield
        return
    futures: list = []
    _DEFERRED.futures = futures
    try:
        yield
    finally:
        _DEFERRED.futures = None
        wait(futures)
    for future in futures:
        future.result()


def run_all(pool: ThreadPoolExecutor, fn: Callable[[Any], Any], items: Iterable[Any]) -> None:
    """Run ``fn`` on every item in ``pool``; wait for all, then raise the first error if any.

    Inside :func:`deferred_writes` only queue them: the block waits at its end.
    """
    futures = [pool.submit(fn, item) for item in items]
    deferred = getattr(_DEFERRED, "futures", None)
    if deferred is not None:
        deferred.extend(futures)
        return
    wait(futures)
    for future in futures:
        future.result()


def compute_in_threads(
    items: Iterable[Any],
    read: Callable[[Any], tuple],
    compute: Callable[..., Any],
    write: Callable[[Any, Any], None],
    threads: int,
) -> None:
    """For each item: ``write(item, compute(*read(item)))``, the computations in ``threads`` threads.

    ``read`` and ``write`` run in the calling thread, in the items' order (file I/O through h5py must stay in
    one thread: its direct chunk reads crash when two threads call them); ``compute`` (work that releases the
    GIL: scikit-image, scipy, large numpy operations) runs in the pool, at most ``threads`` items ahead. The
    first error is raised, after the items before it were written.

    Examples
    --------
    >>> out = []
    >>> compute_in_threads([1, 2, 3], lambda x: (x,), lambda x: x * x, lambda x, y: out.append((x, y)), 2)
    >>> out
    [(1, 1), (2, 4), (3, 9)]
    """
    threads = max(1, threads)
    pending: list[tuple[Any, Any]] = []
    with ThreadPoolExecutor(threads, thread_name_prefix="batchlib-compute") as pool:
        try:
            for item in items:
                pending.append((item, pool.submit(compute, *read(item))))
                if len(pending) >= threads:
                    done, future = pending.pop(0)
                    write(done, future.result())
            while pending:
                done, future = pending.pop(0)
                write(done, future.result())
        finally:
            for _, future in pending:
                future.cancel()
