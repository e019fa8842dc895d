"""Deciding which files a job must process, and why.

Nothing here writes anything. :func:`decide` is a pure function of what the
ledger recorded and what the folder shows now; :func:`plan_job` gathers those
facts for every input of a job (listing the folder once, one ``stat`` per
file, opening a container only when its file changed since the ledger last
saw it) and returns the tasks to run with their reasons.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from .layout import JobLayout
from .readers import group_inputs
from .scan import FolderScan, StampReader, match
from .state import BOOKKEEPING_FOLDER
from .state.ledger import FAILED, INVALID, Ledger, Record, gc_paused
from .state.stamps import fingerprint, split_up_to_date, tree_stamp


@dataclass
class Task:
    """One unit of work: an input file (or, for a plate job, the plate).

    Attributes
    ----------
    name : str
        Ledger key: the input file name, or a plate job's output name.
    inputs : list of str
        Paths of the input files.
    outputs : list of str
        Paths of the output files (one per input; one for a plate job).
    stamps : dict
        Stamps of the inputs read, by reference, when the task was planned.
    reason : str
        Why it runs.
    """

    name: str
    inputs: list[str]
    outputs: list[str]
    stamps: dict[str, str | None]
    reason: str


@dataclass
class Plan:
    """What a job would do: tasks to run, names up to date, file observations."""

    tasks: list[Task] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    #: Names recorded invalid whose inputs did not change since: reason by name.
    still_invalid: dict[str, str] = field(default_factory=dict)
    #: Containers read afresh while planning: name -> (file stamp, key stamps).
    observed: dict[str, tuple[str, dict]] = field(default_factory=dict)


RUN, SKIP, STILL_INVALID = "run", "skip", "still_invalid"
#: The reason of a task that validates again a file recorded invalid for a reason outside it.
CHECKING_AGAIN = "checking again"


def is_recheck(task: Task) -> bool:
    """Whether ``task`` only checks again an unchanged file recorded invalid (``record.recheck``).

    Such a file most likely stays invalid: reports count it as invalid, not
    as pending, and do not expect its output.
    """
    return task.reason.startswith(CHECKING_AGAIN + ":")


def decide(
    record: Record | None,
    params: str,
    version: str,
    stamps: dict[str, str | None],
    force: bool = False,
    output_problem: Callable[[], str | None] = lambda: None,
) -> tuple[str, str]:
    """Whether a file must be processed, and why.

    Parameters
    ----------
    record : Record or None
        What the ledger recorded for the file.
    params, version : str
        The job's current parameter hash and version.
    stamps : dict
        Current stamps of the inputs, by reference.
    force : bool
        ``force_recompute`` was given.
    output_problem : callable
        Returns what is wrong with the recorded outputs, or None; called only
        when everything else is up to date (it may have to look at files).

    Returns
    -------
    action : str
        ``RUN``, ``SKIP`` (up to date) or ``STILL_INVALID`` (recorded invalid
        for a reason in the file's content, and nothing changed since:
        validating again would give the same). An invalid verdict whose
        reason lies outside the file (``record.recheck``: a permission, the
        rest of the plate) runs again: it is checked on every run.
    reason : str

    Examples
    --------
    >>> decide(None, "p", "1", {"a.tif": "3:10"})
    ('run', 'new')
    >>> rec = Record("done", "p", "1", {"a.tif": "3:10"}, {}, None, 0.1, "h", 0.0)
    >>> decide(rec, "p", "1", {"a.tif": "3:10"})
    ('skip', 'up to date')
    >>> decide(rec, "p", "2", {"a.tif": "3:10"})
    ('run', 'version changed (1 -> 2)')
    >>> decide(rec, "p", "1", {"a.tif": "4:11"})
    ('run', 'input changed: a.tif')
    >>> decide(rec._replace(state="invalid", error="not a TIFF"), "p", "1", {"a.tif": "3:10"})
    ('still_invalid', 'invalid: not a TIFF')
    >>> decide(rec._replace(state="invalid", error="permission denied", recheck=True), "p", "1", {"a.tif": "3:10"})
    ('run', 'checking again: permission denied')
    """
    if force:
        return RUN, "forced (force_recompute)"
    if record is None:
        return RUN, "new"
    if record.version != version:
        return RUN, f"version changed ({record.version} -> {version})"
    if record.params != params:
        return RUN, "parameters changed"
    if record.inputs != stamps:
        return RUN, describe_input_change(record.inputs, stamps)
    if record.state == FAILED:
        return RUN, f"failed before: {record.error}"
    if record.state == INVALID and record.recheck:
        return RUN, f"{CHECKING_AGAIN}: {record.error}"
    if record.state == INVALID:
        return STILL_INVALID, f"invalid: {record.error}"
    problem = output_problem()
    if problem:
        return RUN, problem
    return SKIP, "up to date"


def describe_input_change(old: dict, new: dict, limit: int = 3) -> str:
    """Words for how two input-stamp mappings differ.

    Examples
    --------
    >>> describe_input_change({"a": "1"}, {"a": "1", "b": "2"})
    'inputs added: b'
    """
    added = [k for k in new if k not in old]
    removed = [k for k in old if k not in new]
    changed = [k for k in new if k in old and old[k] != new[k]]
    parts = []
    for label, refs in (("input changed", changed), ("inputs added", added), ("inputs removed", removed)):
        if refs:
            more = f" and {len(refs) - limit} more" if len(refs) > limit else ""
            parts.append(f"{label}: {', '.join(refs[:limit])}{more}")
    return "; ".join(parts) or "inputs changed"


def output_problem(
    layout: JobLayout,
    record: Record,
    output: str,
    reader: StampReader,
    validate_output: Callable[[str], str | None] | None,
) -> str | None:
    """What is wrong with the output ``record`` says was written, or None."""
    out_name = os.path.basename(output)
    current = reader.stamps(output, out_name, layout.output_keys)
    if current == record.outputs:
        return None
    missing = [r for r, s in current.items() if s is None]
    if missing:
        return f"output missing: {', '.join(missing)}"
    if layout.output_keys:
        changed = [r for r in current if current[r] != record.outputs.get(r)]
        return f"output rewritten since this job wrote it: {', '.join(changed)}"
    # A plain output file changed since it was written: keep it if still valid.
    if validate_output is None:
        return None
    problem = validate_output(output)
    return f"output invalid: {problem}" if problem else None


def plan_job(
    layout: JobLayout,
    ledger: Ledger,
    scan: FolderScan,
    plate_folder: str,
    force: bool = False,
    validate_output: Callable[[str], str | None] | None = None,
) -> Plan:
    """Decide, for every input of a job, whether it must run and why.

    Parameters
    ----------
    layout : JobLayout
        Where the job reads and writes.
    ledger : Ledger
        Records of earlier runs (only read).
    scan : FolderScan
        Listings and stamps of this run.
    plate_folder : str
        The plate folder (ledger names are relative to it).
    force : bool
        ``force_recompute``.
    validate_output : callable, optional
        ``path -> problem or None`` for plain outputs changed since written.

    Returns
    -------
    Plan
    """
    reader = StampReader(ledger, scan, plate_folder)
    names = scan.matching(layout.input_folder, layout.input_pattern)
    plan = Plan()
    if layout.per_plate:
        _plan_plate(layout, names, ledger.records(layout.name), reader, force, validate_output, plan)
        plan.observed = reader.observed
        return plan
    if layout.group_by:
        _plan_groups(layout, names, ledger.records(layout.name), reader, force, validate_output, plan)
        plan.observed = reader.observed
        return plan
    fingerprints = {} if force else ledger.fingerprints(layout.name)
    records = None  # full records are loaded only if some file is not up to date
    input_prefix = os.path.join(layout.input_folder, "")
    output_prefix = os.path.join(layout.output_folder, "")
    in_keys, out_keys, stamp = layout.input_keys, layout.output_keys, scan.stamp
    if fingerprints and not in_keys and not out_keys:
        names = _skip_up_to_date_files(layout, names, fingerprints, scan, plan)
    for name in names:
        path = input_prefix + name
        out_name = layout.output_file_name(name)
        output = output_prefix + out_name
        stamps = reader.stamps(path, name, in_keys) if in_keys else {name: stamp(path)}
        known = fingerprints.get(name)
        if known is not None:
            # Fast path: one string comparison says the file is up to date.
            out_stamps = reader.stamps(output, out_name, out_keys).values() if out_keys else (stamp(output),)
            if known == fingerprint(layout.params, layout.version, stamps.values(), out_stamps):
                plan.up_to_date.append(name)
                continue
        if records is None:
            records = ledger.records(layout.name)
        _plan_task(
            plan, layout, records.get(name), Task(name, [path], [output], stamps, ""), reader, force, validate_output
        )
    plan.tasks.sort(key=lambda task: task.name)  # run in name order; up-to-date names need no sorting
    plan.observed = reader.observed
    return plan


def plan_chain(
    layouts: list[JobLayout], ledger: Ledger, scan: FolderScan, plate_folder: str, force: bool = False
) -> dict[str, Plan]:
    """Plan jobs in workflow order, as a run would go: what one job will (re)make is pending for the next.

    :func:`plan_job` sees the folder as it is; a file an earlier job would
    only make (or remake) in the run is missing or up to date there. Here
    such a file runs in every later job that reads it, with the reason
    ``input pending from <Job>``. Nothing is written.

    Returns
    -------
    dict
        :class:`Plan` by job name, in order.
    """
    plans: dict[str, Plan] = {}
    pending: dict[str, str] = {}  # output path -> the job that will write it
    for layout in layouts:
        plan = plan_job(layout, ledger, scan, plate_folder, force)
        if pending and not layout.group_by:
            _add_pending(plan, layout, pending)
        for task in plan.tasks:
            if is_recheck(task):  # refused again, most likely: no output to wait for
                continue
            for output in task.outputs:
                pending.setdefault(output, layout.name)
        plans[layout.name] = plan
    return plans


def _add_pending(plan: Plan, layout: JobLayout, pending: dict[str, str]) -> None:
    """Add to ``plan`` the inputs of ``layout`` that an earlier job of the chain will write."""
    folder = os.path.join(layout.input_folder, "")
    waiting = {}
    for path, producer in pending.items():
        name = path[len(folder) :] if path.startswith(folder) else None
        if name and os.sep not in name and match([name], layout.input_pattern):
            waiting[name] = producer
    if layout.per_plate:
        waiting.pop(layout.output_name, None)
        waiting.pop(BOOKKEEPING_FOLDER, None)
        if waiting and not plan.tasks:
            producers = ", ".join(sorted(set(waiting.values())))
            task = Task(layout.output_name, [], [layout.output_path("")], {}, f"inputs pending from {producers}")
            plan.tasks.append(task)
            plan.up_to_date = [n for n in plan.up_to_date if n != layout.output_name]
        return
    running = {task.name for task in plan.tasks}
    added = {name: producer for name, producer in waiting.items() if name not in running}
    for name, producer in added.items():
        plan.still_invalid.pop(name, None)
        plan.tasks.append(Task(name, [folder + name], [layout.output_path(name)], {}, f"input pending from {producer}"))
    plan.up_to_date = [n for n in plan.up_to_date if n not in added]
    plan.tasks.sort(key=lambda task: task.name)


def _skip_up_to_date_files(
    layout: JobLayout, names: list[str], fingerprints: dict, scan: FolderScan, plan: Plan
) -> list[str]:
    """The fast path of plain file jobs (:func:`split_up_to_date`): the up-to-date names go to ``plan``."""
    with gc_paused():
        up_to_date, others = split_up_to_date(
            names,
            fingerprints,
            layout.params,
            layout.version,
            layout.input_folder,
            layout.output_folder,
            layout.output_file_name,
            layout.output_ext,
            scan.stamps_in(layout.input_folder),
            scan.stamps_in(layout.output_folder),
        )
    plan.up_to_date.extend(up_to_date)
    return others


def _plan_groups(layout, names, records, reader, force, validate_output, plan) -> None:
    """Per-file planning where the files of one site (one per channel) make one task."""

    for key, members in group_inputs(layout.group_by, names, layout.input_folder).items():
        paths = [os.path.join(layout.input_folder, m) for m in members]
        stamps: dict[str, str | None] = {}
        for path, member in zip(paths, members):
            stamps.update(reader.stamps(path, member, layout.input_keys))
        output = os.path.join(layout.output_folder, key + (layout.output_ext or ""))
        _plan_task(
            plan, layout, records.get(key), Task(key, paths, [output], stamps, ""), reader, force, validate_output
        )


def _plan_plate(layout, names, records, reader, force, validate_output, plan) -> None:
    # A plate job never reads its own output or the bookkeeping folder.
    names = sorted(n for n in names if n != layout.output_name and n != BOOKKEEPING_FOLDER)
    paths = [os.path.join(layout.input_folder, n) for n in names]
    stamps: dict[str, str | None] = {}
    for path, name in zip(paths, names):
        if not layout.input_keys and os.path.isdir(path):
            stamps[name] = tree_stamp(path)  # a folder input changes when anything inside it does
        else:
            stamps.update(reader.stamps(path, name, layout.input_keys))
    if not names:
        return
    task = Task(layout.output_name, paths, [layout.output_path("")], stamps, "")
    _plan_task(plan, layout, records.get(layout.output_name), task, reader, force, validate_output)


def _plan_task(
    plan: Plan, layout: JobLayout, record: Record | None, task: Task, reader: StampReader, force: bool, validate_output
) -> None:
    """Decide whether ``task`` runs (and why) and file it in ``plan``."""
    action, task.reason = decide(
        record,
        layout.params,
        layout.version,
        task.stamps,
        force,
        lambda: output_problem(layout, record, task.outputs[0], reader, validate_output),
    )
    _add(plan, action, task.reason, task)


def _add(plan: Plan, action: str, reason: str, task: Task) -> None:
    if action == RUN:
        plan.tasks.append(task)
    elif action == STILL_INVALID:
        plan.still_invalid[task.name] = reason
    else:
        plan.up_to_date.append(task.name)


__all__ = [
    "Task",
    "Plan",
    "decide",
    "plan_job",
    "plan_chain",
    "is_recheck",
    "describe_input_change",
    "RUN",
    "SKIP",
    "STILL_INVALID",
]
