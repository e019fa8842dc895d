"""Executors: where batches run. Serial, a process pool, or dask.distributed.

An executor takes a function and a list of argument tuples and yields the
function's results as they complete. A batch whose worker died yields a
:class:`FailedCall` instead, so the driver can record its files as failed
and go on. Only the driver, which consumes the results, writes bookkeeping.
"""

from __future__ import annotations

import atexit
import gc
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

logger = logging.getLogger("Workflow.executors")


@dataclass(frozen=True)
class FailedCall:
    """Stands in for the result of a call that raised or whose worker died (a value, not an exception).

    Attributes
    ----------
    call_args : tuple
        The arguments of the call, as given to :meth:`Executor.map_unordered`.
    error : str
        ``"<ExceptionType>: <message>"``.
    """

    call_args: tuple
    error: str


class Executor:
    """Runs calls of one function over argument tuples; see the subclasses."""

    #: How many calls run at once.
    n_workers: int = 1

    def map_unordered(self, fn: Callable, arg_list: list[tuple]) -> Iterator[Any]:
        """Yield ``fn(*args)`` for every ``args`` (or a :class:`FailedCall`), in completion order."""
        raise NotImplementedError

    def close(self) -> None:
        """Release workers."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialExecutor(Executor):
    """Runs every call in this process, one after the other."""

    def map_unordered(self, fn: Callable, arg_list: list[tuple]) -> Iterator[Any]:
        for args in arg_list:
            yield fn(*args)


def limit_threads(threads: int) -> None:
    """Share the cores between worker processes: cap the threads of numpy, BLAS and TensorFlow.

    Runs in each worker before any job code, so before TensorFlow starts.
    """
    for variable in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "TF_NUM_INTRAOP_THREADS",
        "TF_NUM_INTEROP_THREADS",
    ):
        os.environ.setdefault(variable, str(threads))


def job_threads() -> int:
    """Threads a job may use for its own work in this process: the workers' cap, else every core.

    A worker of a process pool gets ``cores // n_workers`` (:func:`limit_threads`), so jobs that
    thread their per-file work do not oversubscribe the machine; the driver of a serial run may
    use every core.

    Examples
    --------
    >>> job_threads() >= 1
    True
    """
    capped = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, int(capped)) if capped.isdigit() else max(1, os.cpu_count() or 1)


def skip_final_collection() -> None:
    """Let this process exit without Python's last garbage collection.

    A process that has loaded TensorFlow holds so many objects that the
    collection at exit takes about a second (BENCHMARKS.md); an atexit
    :func:`gc.freeze` skips it. Only an object left in a reference cycle
    then gets no ``__del__`` at exit. Called by workers (:func:`start_worker`)
    and by workflow scripts (:func:`batchlib.exits.run_and_exit_code`).
    """
    atexit.unregister(gc.freeze)  # registered once, however often it is called
    atexit.register(gc.freeze)


def start_worker(threads: int) -> None:
    """Initializer of a :class:`ProcessExecutor` worker: cap its threads, log like the driver, and let it exit fast.

    The workflow waits for its workers to exit when the pool closes, so
    they skip the last garbage collection (:func:`skip_final_collection`).
    The worker's ``Workflow`` logger gets the level of ``LOGLEVEL`` and a
    stderr handler, so that its DEBUG records (what StarDist prints while
    its model loads) show with ``LOGLEVEL=DEBUG``.
    """
    from .log import configure

    limit_threads(threads)
    configure()
    skip_final_collection()


class ProcessExecutor(Executor):
    """A pool of ``n_workers`` processes on this machine.

    Workers are started with ``spawn`` (safe with threads and TensorFlow) and
    live for the whole workflow, so what a job loads once per worker (a
    model) is reused by later batches.
    """

    def __init__(self, n_workers: int):
        self.n_workers = n_workers
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            threads = max(1, (os.cpu_count() or 1) // self.n_workers)
            self._pool = ProcessPoolExecutor(
                self.n_workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=start_worker,
                initargs=(threads,),
            )
        return self._pool

    def map_unordered(self, fn: Callable, arg_list: list[tuple]) -> Iterator[Any]:
        pool = self._get_pool()
        futures = {pool.submit(fn, *args): args for args in arg_list}
        broken = False
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as err:  # worker died, or the call could not be pickled
                broken = broken or "BrokenProcessPool" in type(err).__name__
                yield FailedCall(futures[future], f"{type(err).__name__}: {err}")
        if broken:
            self.close()  # start a fresh pool for the next job

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class DaskExecutor(Executor):
    """Runs calls on a dask.distributed cluster.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``), e.g. one started
        by dask-jobqueue on a SLURM cluster. Without it a LocalCluster of
        ``n_workers`` single-threaded worker processes is started and closed
        again by :meth:`close`.
    n_workers : int
        Workers of the LocalCluster.
    """

    def __init__(self, scheduler: str | None = None, n_workers: int = 1):
        from distributed import Client, LocalCluster

        self._cluster = None
        if scheduler:
            self._client = Client(scheduler)
        else:
            self._cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            )
            self._client = Client(self._cluster)
        self.n_workers = max(1, len(self._client.scheduler_info().get("workers", {})) or n_workers)

    def map_unordered(self, fn: Callable, arg_list: list[tuple]) -> Iterator[Any]:
        from distributed import as_completed as dask_completed

        futures = {self._client.submit(fn, *args, pure=False): args for args in arg_list}
        for future in dask_completed(list(futures)):
            try:
                yield future.result()
            except Exception as err:  # task raised, or its worker died (KilledWorker)
                yield FailedCall(futures[future], f"{type(err).__name__}: {err}")
            finally:
                future.release()

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_executor(
    executor: str | Executor | None = None, n_jobs: int = 1, dask_scheduler: str | None = None
) -> Executor:
    """The executor asked for by a workflow's options.

    Parameters
    ----------
    executor : str or Executor, optional
        ``"serial"``, ``"processes"``, ``"dask"`` or an Executor instance.
        By default: dask if a scheduler is given, processes if ``n_jobs > 1``,
        else serial.
    n_jobs : int
        Worker processes (processes, dask LocalCluster).
    dask_scheduler : str, optional
        Address of a dask scheduler.
    """
    if isinstance(executor, Executor):
        return executor
    executor = check_executor_options(executor, n_jobs, dask_scheduler)
    if executor == "serial":
        return SerialExecutor()
    if executor == "processes":
        return ProcessExecutor(n_jobs)
    return DaskExecutor(dask_scheduler, n_jobs)


def check_executor_options(executor: str | Executor | None, n_jobs: int, dask_scheduler: str | None = None) -> str:
    """The executor kind the options ask for; ConfigError naming the option if they are wrong.

    Examples
    --------
    >>> check_executor_options(None, 2), check_executor_options(None, 1, "tcp://h:8786")
    ('processes', 'dask')
    >>> check_executor_options(None, 0)
    Traceback (most recent call last):
    ...
    batchlib.errors.ConfigError: n_jobs (--n-jobs) must be at least 1, got 0
    """
    if isinstance(executor, Executor):
        return "given"
    if not isinstance(n_jobs, int) or isinstance(n_jobs, bool) or n_jobs < 1:
        raise ConfigError(f"n_jobs (--n-jobs) must be at least 1, got {n_jobs!r}")
    if executor is None:
        return "dask" if dask_scheduler else ("processes" if n_jobs > 1 else "serial")
    if executor not in ("serial", "processes", "dask"):
        raise ConfigError(f"executor (--executor) must be 'serial', 'processes' or 'dask', got {executor!r}")
    return executor


def batch_size_for(job_batch_size: int, n_files: int, n_workers: int, batches_per_worker: int = 4) -> int:
    """Files per call of a job's ``run``: its ``batch_size``, but small enough to balance the workers.

    With several workers each gets at least ``batches_per_worker`` batches
    where there are files enough, so none waits long for the last batch of
    another.

    Examples
    --------
    >>> batch_size_for(16, 384, 2)
    16
    >>> batch_size_for(16, 48, 2)  # 8 batches of 6, 4 per worker
    6
    >>> batch_size_for(16, 32, 1)  # one worker: no balancing needed
    16
    """
    balanced = -(-n_files // (n_workers * batches_per_worker)) if n_workers > 1 else n_files  # ceiling division
    return max(1, min(int(job_batch_size), balanced))


def call_sizes(n_batches: int, n_workers: int, limit: int = 64) -> list[int]:
    """How many batches each call gets: large calls first, single batches at the end.

    Each call takes a quarter of a worker's share of what is left (at most
    ``limit``), as OpenMP's guided schedule does: few round trips while much
    is left, and workers finish within about one batch of each other instead
    of one waiting while another works through its last large call.

    Examples
    --------
    >>> call_sizes(10, 2)
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    >>> sizes = call_sizes(384, 2)
    >>> sizes[:4], sizes[-3:], sum(sizes), len(sizes)
    ([48, 42, 36, 32], [1, 1, 1], 384, 41)
    """
    sizes = []
    remaining = n_batches
    while remaining > 0:
        size = max(1, min(limit, remaining // (4 * max(n_workers, 1))))
        sizes.append(size)
        remaining -= size
    return sizes


__all__ = [
    "Executor",
    "SerialExecutor",
    "ProcessExecutor",
    "DaskExecutor",
    "FailedCall",
    "make_executor",
    "check_executor_options",
    "call_sizes",
    "batch_size_for",
    "skip_final_collection",
]
