"""run_workflow: run a list of jobs over one plate folder.

The driver checks the options, takes the folder lock, opens the ledger and
the executor, gives each job its turn (:func:`batchlib.job_run.run_one_job`:
plan, run, record), stops after a job whose failures the run's flags do not
ignore, and writes the workflow's status and log summary. Only this process
writes bookkeeping.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .base import BatchJob
from .errors import ConfigError, ResourceError
from .executors import Executor, check_executor_options, make_executor
from .job_run import JobResult, RunContext, run_one_job
from .log import add_file_handler, configure, remove_handler
from .oserrors import resource_error
from .scan import FolderScan
from .state import BOOKKEEPING_FOLDER
from .state.atomic import TMP_PREFIX, remove_path
from .state.ledger import Ledger
from .state.lock import FolderLock
from .state.status import now_iso, write_status


def _normalize_jobs(jobs: Iterable[Any]) -> list[tuple[BatchJob, dict]]:
    normalized = []
    for entry in jobs:
        job, kwargs = entry if isinstance(entry, tuple) else (entry, {})
        if not isinstance(job, BatchJob):
            raise ConfigError(f"jobs must be BatchJob instances or (job, run_kwargs) pairs, got {entry!r}")
        normalized.append((job, dict(kwargs or {})))
    names = [job.name for job, _ in normalized]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(
            f"job names must be unique in a workflow; {', '.join(duplicates)} appear twice: give each an identifier"
        )
    return normalized


def run_workflow(
    name: str,
    folder: str | os.PathLike,
    jobs: Sequence[BatchJob | tuple[BatchJob, dict]],
    input_folder: str | os.PathLike | None = None,
    force_recompute: bool = False,
    ignore_invalid_inputs: bool = False,
    ignore_failed_outputs: bool = False,
    n_jobs: int = 1,
    executor: str | Executor | None = None,
    dask_scheduler: str | None = None,
    wait: bool = False,
    lock_ttl: float | None = None,
    progress: bool = True,
    lock: FolderLock | None = None,
    exclude_inputs: dict[str, set[str]] | None = None,
) -> dict[str, JobResult]:
    """Run ``jobs`` in order over plate ``folder``, processing only what is needed.

    Parameters
    ----------
    name : str
        Workflow name: names ``batchlib/<name>.status`` and ``<name>.log``.
    folder : path-like
        The plate folder; created if missing.
    jobs : list
        Job instances, or ``(job, run_kwargs)`` pairs whose keyword arguments
        are passed to the job's ``run`` (and count as parameters).
    input_folder : path-like, optional
        Where the first job finds its inputs (the raw images), if not in
        ``folder`` and the job names no folder of its own.
    force_recompute : bool
        Process every file again.
    ignore_invalid_inputs : bool
        Record invalid inputs and go on; otherwise the workflow stops after
        the job that found them.
    ignore_failed_outputs : bool
        Record failures and go on with the next job (which skips the failed
        files); otherwise the workflow stops after the job.
    n_jobs : int
        Worker processes.
    executor : str or Executor, optional
        ``"serial"``, ``"processes"``, ``"dask"`` or an Executor; see
        :func:`batchlib.executors.make_executor`.
    dask_scheduler : str, optional
        Address of a dask.distributed scheduler to run on.
    wait : bool
        Wait for the folder lock instead of failing at once.
    lock_ttl : float, optional
        Heartbeat TTL of the folder lock (seconds).
    progress : bool
        Show tqdm progress bars on stderr.
    lock : FolderLock, optional
        The folder's lock, already held by the caller (watch mode holds it
        between runs); it is neither taken nor released here.
    exclude_inputs : dict, optional
        Folder -> names that no job sees in this run (watch mode: raw files
        still being written).

    Returns
    -------
    dict
        :class:`JobResult` by job name, in order; jobs after a stop are
        ``not_run``. :func:`exit_code` turns it into the process exit code.

    Raises
    ------
    FolderLockedError
        Another workflow holds the folder (exit code 75).
    ConfigError
        Bad options (exit code 2).
    """
    job_list = _normalize_jobs(jobs)
    folder = os.path.abspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ConfigError(f"folder {folder} exists and is not a folder")
    if input_folder is not None and not os.path.isdir(input_folder):
        raise ConfigError(f"input_folder {input_folder} does not exist or is not a folder")
    layouts = [job.layout(folder, input_folder if i == 0 else None, kwargs) for i, (job, kwargs) in enumerate(job_list)]
    for layout in layouts:
        if layout.input_folder != folder and not os.path.isdir(layout.input_folder):
            raise ConfigError(f"{layout.name}: input folder {layout.input_folder} does not exist or is not a folder")
    check_executor_options(executor, n_jobs, dask_scheduler)  # before anything is created or locked
    bookkeeping = Path(folder) / BOOKKEEPING_FOLDER
    bookkeeping.mkdir(parents=True, exist_ok=True)
    logger = configure()
    own_lock = lock is None
    if own_lock:
        lock = FolderLock(bookkeeping, workflow=name, **({"ttl": lock_ttl} if lock_ttl else {}))
        lock.acquire(wait=wait)
    handler = add_file_handler(bookkeeping, name)
    results = {job.name: JobResult(job.name) for job, _ in job_list}
    workflow_state = "running"
    started = now_iso()
    ledger = None
    run_executor = None
    try:
        logger.info("workflow %s on %s: %d job(s)", name, folder, len(job_list))
        ledger = Ledger(bookkeeping)
        for layout in layouts:
            ledger.set_job_spec(layout.name, layout.to_spec(folder))
        scan = FolderScan(exclude_inputs)
        _remove_stale_temporaries(scan, [folder, *[layout.output_folder for layout in layouts]])
        run_executor = make_executor(executor, n_jobs, dask_scheduler)
        ctx = RunContext(
            folder,
            bookkeeping,
            ledger,
            scan,
            run_executor,
            force_recompute,
            ignore_invalid_inputs,
            ignore_failed_outputs,
            progress,
        )
        _write_workflow_status(bookkeeping, name, folder, workflow_state, started, results)
        for i, (job, kwargs) in enumerate(job_list):
            # Laid out again at its turn: a parameter may come from an earlier job's output (the illumination field).
            layout = job.layout(folder, input_folder if i == 0 else None, kwargs)
            ledger.set_job_spec(layout.name, layout.to_spec(folder))
            results[job.name] = run_one_job(job, kwargs, layout, ctx)
            _write_workflow_status(bookkeeping, name, folder, workflow_state, started, results)
            if results[job.name].stops_workflow:
                workflow_state = "stopped"
                logger.error(
                    "workflow %s stopped after %s (%s); fix the files listed in %s or rerun with %s",
                    name,
                    job.name,
                    results[job.name].state,
                    bookkeeping / f"{job.name}.status",
                    "--ignore-failed-outputs" if results[job.name].failed else "--ignore-invalid-inputs",
                )
                break
        else:
            workflow_state = "done"
        ledger.compact()
    except KeyboardInterrupt:
        workflow_state = "interrupted"
        raise
    except ResourceError as err:
        workflow_state = "stopped"
        logger.error("workflow %s stopped: %s", name, err)
        raise
    except OSError as err:  # the driver's own writes (ledger, status files) on a full disk
        stop = resource_error(err)
        workflow_state = "failed" if stop is None else "stopped"
        if stop is None:
            raise
        logger.error("workflow %s stopped: %s", name, stop)
        raise stop from err
    except BaseException:
        workflow_state = "failed"
        raise
    finally:
        # Each step on its own: on a full disk one failing must not keep the lock from being released.
        with contextlib.suppress(OSError):
            if ledger is not None:
                ledger.close()
        if run_executor is not None and not isinstance(executor, Executor):
            run_executor.close()
        try:
            with contextlib.suppress(OSError):
                _write_workflow_status(bookkeeping, name, folder, workflow_state, started, results)
            _log_summary(logger, name, results, workflow_state)
            remove_handler(handler)
        finally:
            if own_lock:
                lock.release()
    return results


def run_job(job: BatchJob, folder: str | os.PathLike, **options: Any) -> JobResult:
    """Run ``job`` alone on ``folder``: a workflow of one job, ``<job name>Workflow``, with lock, ledger and status.

    Parameters
    ----------
    job : BatchJob
        The job.
    folder : path-like
        The plate folder.
    **options
        Options of :func:`run_workflow` (``input_folder``, ``force_recompute``,
        ``n_jobs``, ...); ``run_kwargs``, a dict, is passed to the job's ``run``.

    Returns
    -------
    JobResult
        What the job did.
    """
    run_kwargs = options.pop("run_kwargs", None) or {}
    # Not the job's own name: the workflow's status file would overwrite the job's.
    return run_workflow(f"{job.name}Workflow", folder, [(job, run_kwargs)], **options)[job.name]


def exit_code(results: dict[str, JobResult]) -> int:
    """Exit code of a workflow run: 1 if a job's failures or invalid inputs stopped it, else 0."""
    return 1 if any(r.stops_workflow for r in results.values()) else 0


def _remove_stale_temporaries(scan: FolderScan, folders: list[str]) -> None:
    # Temporary outputs of a killed run; safe to remove while we hold the lock.
    for folder in dict.fromkeys(folders):
        for name in scan.hidden_names(folder):
            if name.startswith(TMP_PREFIX):
                remove_path(os.path.join(folder, name))


def _write_workflow_status(
    bookkeeping: Path, name: str, folder: str, state: str, started: str, results: dict[str, JobResult]
) -> None:
    write_status(
        bookkeeping,
        name,
        {
            "workflow": name,
            "folder": folder,
            "state": state,
            "started": started,
            "updated": now_iso(),
            "jobs": {
                job: {**r.counts(), "processed_now": r.processed, "skipped": r.skipped, "seconds": round(r.seconds, 3)}
                for job, r in results.items()
            },
        },
    )


def _log_summary(logger: logging.Logger, name: str, results: dict[str, JobResult], state: str) -> None:
    width = max([len(n) for n in results] + [3])
    lines = [f"{'job':<{width}}  {'done':>7} {'skipped':>7} {'failed':>7} {'invalid':>7} {'time':>9}"]
    for job, r in results.items():
        lines.append(f"{job:<{width}}  {r.processed:>7} {r.skipped:>7} {r.failed:>7} {r.invalid:>7} {r.seconds:>8.1f}s")
    logger.info("workflow %s %s\n%s", name, state, "\n".join(lines))
