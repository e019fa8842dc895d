"""Reading a plate folder's bookkeeping without running anything.

Used by ``batchlib status`` and ``batchlib explain``. Jobs are planned from
the layout each job saved in the ledger at its last run, so no job class is
needed; parameter or version changes made since in a workflow script show
only when that script runs (``--explain`` of a workflow script plans with the
real jobs).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from .errors import ConfigError
from .layout import JobLayout
from .planning import Plan, is_recheck, plan_chain
from .scan import FolderScan
from .state import BOOKKEEPING_FOLDER
from .state.ledger import DONE, FAILED, Ledger
from .state.lock import lock_is_stale, read_lock
from .state.status import NOT_RUN, job_state, read_status


def bookkeeping_folder(folder: str | os.PathLike) -> Path:
    """The ``batchlib/`` folder of a plate folder; ConfigError if there is none."""
    path = Path(folder) / BOOKKEEPING_FOLDER
    if not path.is_dir():
        raise ConfigError(f"{folder} has no {BOOKKEEPING_FOLDER}/ folder: no workflow has run there yet")
    return path


def plan_saved_jobs(folder: str | os.PathLike, job: str | None = None) -> tuple[Ledger, dict[str, Plan]]:
    """Plan every job the ledger knows (or only ``job``), read-only."""
    folder = os.path.abspath(folder)
    ledger = Ledger(bookkeeping_folder(folder), writable=False)
    names = ledger.jobs()
    if job is not None:
        if job not in names:
            raise ConfigError(f"--job {job}: no such job in {folder}; known jobs: {', '.join(names) or 'none'}")
        names = [job]
    # Every job in its order, so files an earlier job would remake count as pending for the later ones.
    layouts = [JobLayout.from_spec(ledger.job_spec(name), folder) for name in ledger.jobs() if ledger.job_spec(name)]
    plans = plan_chain(layouts, ledger, FolderScan(), folder)
    return ledger, {name: plans[name] for name in names if name in plans}


def job_counts(ledger: Ledger, name: str, plan: Plan, bookkeeping: str | None = None) -> dict:
    """Counts and state of one job, in the shape of ``batchlib status --json``.

    ``missing`` (inputs the job expected but did not find, such as fields the
    plate metadata lists) is as of the job's last run, from its status file
    in ``bookkeeping``.
    """
    records = ledger.records(name)
    failed = sum(1 for t in plan.tasks if t.name in records and records[t.name].state == FAILED)
    rechecked = sum(1 for t in plan.tasks if is_recheck(t))  # refused on every run: invalid, not pending
    counts = {
        "done": len(plan.up_to_date),
        "failed": failed,
        "invalid": len(plan.still_invalid) + rechecked,
        "pending": len(plan.tasks) - failed - rechecked,
    }
    if not records:
        state = NOT_RUN
    else:  # processed once something was done, even if all of it is pending again now
        state = job_state(int(any(r.state == DONE for r in records.values())), failed, counts["invalid"])
    last = read_status(bookkeeping, name) if bookkeeping else None
    missing = (last or {}).get("missing") or {}
    return {**counts, "missing": len(missing), "missing_inputs": missing, "state": state}


def folder_status(folder: str | os.PathLike) -> dict:
    """The status of a plate folder, exactly as ``batchlib status --json`` prints it.

    ``lock`` is None or the holder's ``pid``, ``host`` and ``since``, and
    ``stale``: True when the next run will break the lock
    (:func:`batchlib.state.lock.lock_is_stale`: its process no longer runs on
    this host, or another host's heartbeat is older than its TTL).
    """
    folder = os.path.abspath(folder)
    ledger, plans = plan_saved_jobs(folder)
    holder = read_lock(bookkeeping_folder(folder))
    lock = None
    if holder is not None:
        stale, _ = lock_is_stale(holder, socket.gethostname(), time.time())
        lock = {**{k: holder.get(k) for k in ("pid", "host", "since")}, "stale": stale}
    from .watch import watch_state

    bookkeeping = str(bookkeeping_folder(folder))
    jobs = {name: job_counts(ledger, name, p, bookkeeping) for name, p in plans.items()}
    from .batch import batch_status

    return {"folder": folder, "lock": lock, "jobs": jobs, "watch": watch_state(folder), "batch": batch_status(folder)}


def _describe_lock(lock: dict | None) -> str:
    if lock is None:
        return "free"
    holder = f"pid {lock['pid']} on {lock['host']} since {lock['since']}"
    if not lock.get("stale"):
        return f"held by {holder}"
    gone = "no longer runs" if lock["host"] == socket.gethostname() else "sent no heartbeat within its TTL"
    return f"stale: {holder} {gone} (the next run breaks it; or batchlib unlock)"


def format_status(status: dict) -> str:
    """``folder_status`` as a readable table."""
    lines = [f"folder: {status['folder']}", f"lock:   {_describe_lock(status['lock'])}"]
    watch = status.get("watch")
    if watch and watch.get("alive"):
        pending = watch.get("pending") or {}
        lines.append(
            f"watch:  watched since {watch['since']} by pid {watch['pid']} ({watch['raw_folder']}); "
            f"{len(pending.get('settling', []))} file(s) settling; {pending.get('why', '')}"
        )
    elif watch:
        lines.append(f"watch:  not watched ({watch.get('state')} at {watch.get('updated')})")
    batch = status.get("batch")
    if batch:
        steps = batch["batch_steps"]
        lines.append(f"batch:  {len(batch['plates'])} plate(s) with profiles, last run {batch['updated']}")
        for plate, result in batch["plates"].items():
            failed = f", normalize failed: {'; '.join(result['failed'].values())}" if result["failed"] else ""
            lines.append(f"  {plate}: normalized {result['processed']} time(s) in that run{failed}")
        if batch["plates_without_export"]:
            lines.append(f"  without profiles yet: {', '.join(batch['plates_without_export'])}")
        lines.append(f"  feature selection and consensus: {steps['action']} ({steps['why']})")
    jobs = status["jobs"]
    width = max([len(n) for n in jobs] + [3])
    lines.append(f"{'job':<{width}}  {'done':>7} {'failed':>7} {'invalid':>7} {'pending':>7}  state")
    for name, c in jobs.items():
        lines.append(
            f"{name:<{width}}  {c['done']:>7} {c['failed']:>7} {c['invalid']:>7} {c['pending']:>7}  {c['state']}"
        )
    for name, c in jobs.items():
        if c.get("missing"):
            lines.append(f"{name}: {c['missing']} expected input(s) missing at its last run:")
            lines += [f"  {key}: {why}" for key, why in list(c["missing_inputs"].items())[:10]]
            if c["missing"] > 10:
                lines.append(f"  ... and {c['missing'] - 10} more (batchlib status --json lists them all)")
    return "\n".join(lines)


def explain_jobs(
    folder: str | os.PathLike,
    jobs: list,
    input_folder: str | os.PathLike | None = None,
    force_recompute: bool = False,
    limit: int | None = 50,
) -> str:
    """Like :func:`explain`, but planned with the real jobs of a workflow script.

    Parameter and version changes show here. Files an earlier job would make
    or remake in the run show as pending in the jobs after it
    (:func:`batchlib.planning.plan_chain`).
    """
    folder = os.path.abspath(folder)
    bookkeeping = Path(folder) / BOOKKEEPING_FOLDER
    ledger = Ledger(bookkeeping, writable=False)
    layouts = []
    for i, entry in enumerate(jobs):
        job, kwargs = entry if isinstance(entry, tuple) else (entry, {})
        layouts.append(job.layout(folder, input_folder if i == 0 else None, kwargs))
    return _format_plans(plan_chain(layouts, ledger, FolderScan(), folder, force_recompute), limit)


def explain(folder: str | os.PathLike, job: str | None = None, limit: int | None = None) -> str:
    """Per job, which files would run and why, in words."""
    _, plans = plan_saved_jobs(folder, job)
    return _format_plans(plans, limit)


def _format_plans(plans: dict[str, Plan], limit: int | None) -> str:
    lines = []
    for name, plan in plans.items():
        lines.append(
            f"{name}: {len(plan.tasks)} would run, {len(plan.up_to_date)} up to date, {len(plan.still_invalid)} invalid"
        )
        shown = plan.tasks if limit is None else plan.tasks[:limit]
        for task in shown:
            lines.append(f"  run  {task.name}: {task.reason}")
        if len(shown) < len(plan.tasks):
            lines.append(f"  ... and {len(plan.tasks) - len(shown)} more")
        for file, why in plan.still_invalid.items():
            lines.append(f"  skip {file}: {why}")
    return "\n".join(lines)
