"""One job's turn in a workflow run: plan, refuse, execute, record, report.

:func:`run_one_job` plans the job (:mod:`batchlib.planning`), records as
invalid the files an earlier job failed to make and those the plate-wide
checks refuse (:mod:`batchlib.plate_checks`), sends the rest to the run's
executor, commits each file's result to the ledger as it arrives, and writes
``batchlib/<job>.status``. :mod:`batchlib.workflow` calls it for each job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .base import BatchJob, check_result
from .errors import ResourceError
from .executors import Executor, FailedCall, SerialExecutor, batch_size_for, call_sizes
from .layout import JobLayout
from .log import get_logger
from .params import canonical_json
from .planning import Plan, Task, plan_job
from .plate_checks import checks_across_plate, gather_facts
from .progress import FileProgress
from .scan import FolderScan, ledger_name
from .state.ledger import DONE, FAILED, INVALID, Ledger, Record
from .state.status import NOT_RUN, job_state, now_iso, write_status
from .worker import FileResult, WorkItem, process_batches

#: Seconds between fsyncs of the ledger journal during a long job (each record is written at once).
SYNC_INTERVAL = 30.0


@dataclass
class JobResult:
    """What one job did in a run, and where it stands.

    Attributes
    ----------
    name : str
    state : str
        ``processed``, ``failed_outputs``, ``invalid_inputs`` or ``not_run``.
    processed, skipped, failed, invalid : int
        Files processed successfully in this run, up to date and skipped,
        failed, and invalid.
    pending : int
        Files that still need to run (left over by an interrupted run).
    seconds : float
        Wall time of the job.
    failed_files, invalid_files : dict
        Reasons, by file name.
    stops_workflow : bool
        Failures or invalid inputs that the run flags do not ignore.
    not_produced : set
        The invalid inputs that an earlier job of this run failed to make
        (they do not stop the workflow a second time).
    missing : dict
        Inputs the job expected but are not there (:meth:`BatchJob.missing_inputs`), with why.
    warnings : dict
        Warnings raised while files were processed, by file name.
    """

    name: str
    state: str = NOT_RUN
    processed: int = 0
    skipped: int = 0
    failed: int = 0
    invalid: int = 0
    pending: int = 0
    seconds: float = 0.0
    failed_files: dict = field(default_factory=dict)
    invalid_files: dict = field(default_factory=dict)
    stops_workflow: bool = False
    not_produced: set = field(default_factory=set)
    missing: dict = field(default_factory=dict)
    warnings: dict = field(default_factory=dict)

    def counts(self) -> dict:
        """The counts of ``batchlib status`` for this job."""
        return {
            "done": self.processed + self.skipped,
            "failed": self.failed,
            "invalid": self.invalid,
            "pending": self.pending,
            "state": self.state,
        }


@dataclass
class RunContext:
    """What every job of one workflow run shares: the plate, its bookkeeping, the executor, the run's flags."""

    folder: str
    bookkeeping: Path
    ledger: Ledger
    scan: FolderScan
    executor: Executor
    force_recompute: bool
    ignore_invalid_inputs: bool
    ignore_failed_outputs: bool
    progress: bool
    #: Output paths whose job failed in this run (ignore_failed_outputs).
    failed_outputs: dict[str, str] = field(default_factory=dict)


def run_one_job(job: BatchJob, kwargs: dict, layout: JobLayout, ctx: RunContext) -> JobResult:
    """Plan ``job``, refuse what it cannot take, run the rest, record every file's result and write its status."""
    logger = get_logger(job.name)
    start = time.perf_counter()
    plan = plan_job(
        layout,
        ctx.ledger,
        ctx.scan,
        ctx.folder,
        ctx.force_recompute,
        lambda path: check_result(job.validate_output(path), "validate_output"),
    )
    for name, (stamp, keys) in plan.observed.items():
        ctx.ledger.observe_file(name, stamp, keys, merge=False)
    result = JobResult(job.name, skipped=len(plan.up_to_date))
    result.invalid_files.update(plan.still_invalid)
    if not layout.per_plate:
        result.missing = job.missing_inputs(ctx.scan.matching(layout.input_folder, layout.input_pattern))
        if result.missing:
            first = next(iter(result.missing.values()))
            logger.warning("%s: %d expected input(s) missing, e.g. %s", job.name, len(result.missing), first)
    tasks = _drop_upstream_failures(plan, layout, ctx, result)
    tasks = _refuse_across_plate(job, layout, plan, tasks, ctx, result, logger)
    logger.info(
        "%s: %d to run, %d up to date, %d invalid",
        job.name,
        len(tasks),
        len(plan.up_to_date),
        len(result.invalid_files),
    )
    for task in tasks[:20]:
        logger.debug("%s: %s runs: %s", job.name, task.name, task.reason)

    if tasks:
        _execute(job, kwargs, layout, tasks, ctx, result, logger)
    result.seconds = time.perf_counter() - start
    result.failed, result.invalid = len(result.failed_files), len(result.invalid_files)
    result.state = job_state(result.processed + result.skipped, result.failed, result.invalid)
    result.stops_workflow = bool(
        (result.failed and not ctx.ignore_failed_outputs)
        or (result.invalid - len(result.not_produced) and not ctx.ignore_invalid_inputs)
    )
    if tasks:
        ctx.scan.forget([])  # listings change when outputs appear
    _write_job_status(job, layout, plan, result, ctx)
    return result


_UPSTREAM = "not produced: "


def _drop_upstream_failures(plan: Plan, layout: JobLayout, ctx: RunContext, result: JobResult) -> list[Task]:
    """Tasks whose inputs an earlier job failed to produce are recorded invalid, not run."""
    if not ctx.failed_outputs:
        return plan.tasks
    kept = []
    for task in plan.tasks:
        failed = [p for p in task.inputs if p in ctx.failed_outputs]
        if not failed:
            kept.append(task)
        elif len(failed) < len(task.inputs):  # a plate job goes on without them
            task.inputs = [p for p in task.inputs if p not in ctx.failed_outputs]
            for path in failed:
                result.invalid_files[os.path.basename(path)] = _UPSTREAM + ctx.failed_outputs[path]
                result.not_produced.add(os.path.basename(path))
            kept.append(task)
        else:
            reason = _UPSTREAM + "; ".join(ctx.failed_outputs[p] for p in failed[:3])
            _commit(ctx, layout, task, FileResult(task.name, INVALID, reason))
            result.invalid_files[task.name] = reason
            result.not_produced.add(task.name)
    return kept


def _refuse_across_plate(
    job: BatchJob, layout: JobLayout, plan: Plan, tasks: list[Task], ctx: RunContext, result: JobResult, logger
) -> list[Task]:
    """Tasks whose inputs the job refuses because of the rest of the plate are recorded invalid, not run.

    Such verdicts are checked again on every run (see :mod:`batchlib.plate_checks`).
    """
    if not tasks or not checks_across_plate(job):
        return tasks
    facts = gather_facts(job, layout, ctx.scan, ctx.ledger, ctx.folder, logger)
    # A file known to be broken (recorded invalid for its content, unchanged since) does not count.
    facts = {name: f for name, f in facts.items() if name not in plan.still_invalid}
    problems = job.plate_problems(facts, set(plan.up_to_date))
    kept = []
    for task in tasks:
        reasons = [problems[name] for name in map(os.path.basename, task.inputs) if name in problems]
        if not reasons:
            kept.append(task)
            continue
        reason = "; ".join(reasons)
        _commit(ctx, layout, task, FileResult(task.name, INVALID, reason, recheck=True))
        result.invalid_files[task.name] = reason
        logger.warning("%s: invalid input %s: %s", job.name, task.name, reason)
    return kept


def _execute(
    job: BatchJob,
    kwargs: dict,
    layout: JobLayout,
    tasks: list[Task],
    ctx: RunContext,
    result: JobResult,
    logger: logging.Logger,
) -> None:
    by_name = {task.name: task for task in tasks}
    items = [WorkItem(t.name, t.inputs, t.outputs) for t in tasks]
    size = batch_size_for(job.batch_size, len(items), ctx.executor.n_workers)
    batches = [items[i : i + size] for i in range(0, len(items), size)]
    calls, start = [], 0
    for n in call_sizes(len(batches), ctx.executor.n_workers):
        calls.append((job, batches[start : start + n], kwargs, ctx.ignore_invalid_inputs))
        start += n
    result.pending = len(tasks)
    # A plate job runs here, in the driver, and may spread its per-image
    # work over the workers itself (BatchJob.map_parallel).
    executor = SerialExecutor() if layout.per_plate else ctx.executor
    lent = job.lending_workers(ctx.executor) if layout.per_plate else contextlib.nullcontext()
    try:
        with lent:
            outcomes = executor.map_unordered(process_batches, calls)
            _collect(outcomes, job, layout, by_name, ctx, result, logger, len(tasks))
    finally:
        ctx.ledger.flush()


def _collect(outcomes, job, layout, by_name, ctx: RunContext, result: JobResult, logger, total: int) -> None:
    """Commit each file's result as it arrives, with a progress bar."""
    last_sync = time.monotonic()
    with FileProgress(total, job.name, ctx.progress) as bar:
        for outcome in outcomes:
            if isinstance(outcome, FailedCall):
                _, batches, _, _ = outcome.call_args  # (job, batches, kwargs, ignore_invalid_inputs)
                why = f"worker failed: {outcome.error}"
                outcome = [FileResult(item.name, FAILED, why) for batch in batches for item in batch]
            stop = None
            for file_result in outcome:
                if file_result.stop:  # unfinished: no record, the rerun does it
                    stop = stop or file_result.stop
                    continue
                task = by_name[file_result.name]
                _commit(ctx, layout, task, file_result)
                _count(file_result, task, result, ctx, logger)
            bar.update(len(outcome))
            if stop:
                raise ResourceError(stop)
            if time.monotonic() - last_sync > SYNC_INTERVAL:
                ctx.ledger.flush()
                last_sync = time.monotonic()


def _commit(ctx: RunContext, layout: JobLayout, task: Task, r: FileResult) -> None:
    record = Record(
        r.state,
        layout.params,
        layout.version,
        task.stamps,
        r.outputs,
        r.error,
        round(r.duration, 6),
        r.host,
        time.time(),
        r.recheck,
    )
    for path, (stamp, keys) in r.written.items():
        if keys:  # containers: remember the key stamps for later jobs
            ctx.ledger.observe_file(ledger_name(path, ctx.folder), stamp, keys, merge=True)
        ctx.scan.forget([path])
    ctx.ledger.commit(layout.name, task.name, record)


def _count(r: FileResult, task: Task, result: JobResult, ctx: RunContext, logger: logging.Logger) -> None:
    result.pending -= 1
    for message in r.warnings:  # with the file's name, unless the message starts with it
        named = message if message.startswith(task.name) else f"{task.name}: {message}"
        logger.warning("%s: %s", result.name, named)
    if r.warnings:
        result.warnings[task.name] = list(r.warnings)
    if r.state == DONE:
        result.processed += 1
        for name, why in r.skipped_inputs.items():
            result.invalid_files[name] = why
    elif r.state == FAILED:
        result.failed_files[task.name] = r.error
        for output in task.outputs:
            ctx.failed_outputs[output] = f"{result.name} failed on {task.name}"
        logger.warning("%s failed on %s: %s", result.name, task.name, r.error)
        if r.detail:
            logger.debug("%s", r.detail)
    else:
        result.invalid_files[task.name] = r.error
        logger.warning("%s: invalid input %s: %s", result.name, task.name, r.error)


def _write_job_status(job: BatchJob, layout: JobLayout, plan: Plan, result: JobResult, ctx: RunContext) -> None:
    # Files not run are up to date or still invalid: the plan knows their
    # state, so a no-op rerun never loads the full records.
    ran = [t.name for t in plan.tasks]
    records = ctx.ledger.records(job.name) if ran else {}
    failed = {n: records[n].error for n in ran if n in records and records[n].state == FAILED}
    invalid = dict(plan.still_invalid)
    invalid.update({n: records[n].error for n in ran if n in records and records[n].state == INVALID})
    done = len(plan.up_to_date) + sum(1 for n in ran if n in records and records[n].state == DONE)
    write_status(
        ctx.bookkeeping,
        job.name,
        {
            "job": job.name,
            "state": result.state,
            "updated": now_iso(),
            "version": layout.version,
            "params": layout.params,
            "parameters": json.loads(canonical_json(job.parameters())),
            "layout": layout.to_spec(ctx.folder),
            "counts": {
                "done": done,
                "failed": len(failed),
                "invalid": len(invalid),
                "pending": result.pending,
                "missing": len(result.missing),
            },
            "last_run": {
                "processed": result.processed,
                "skipped": result.skipped,
                "failed": result.failed,
                "invalid": result.invalid,
                "seconds": round(result.seconds, 3),
            },
            "failed": failed,
            "invalid": invalid,
            "missing": result.missing,
            "warnings": result.warnings,
        },
    )
