"""What runs in a worker: process a batch of tasks, return per-file results.

Workers never touch the ledger, the lock or the status files; they return a
:class:`FileResult` per file and the driver records them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import traceback
from dataclasses import dataclass, field

from .base import BatchJob, check_result
from .capture import captured_warnings
from .errors import ContainerError, InvalidInputError, OutputError
from .io import is_container, open_file, write_key_stamps
from .io.backends import backend_of
from .oserrors import input_error, resource_error
from .state import BOOKKEEPING_FOLDER
from .state.atomic import remove_path, replace, temporary_sibling
from .state.ledger import DONE, FAILED, INVALID
from .state.stamps import file_stamp, new_key_stamp, ref, stat_stamp


@dataclass
class WorkItem:
    """What a worker needs of a task: its name, input paths and output paths."""

    name: str
    inputs: list[str]
    outputs: list[str]


@dataclass
class FileResult:
    """The outcome of one task, sent back to the driver.

    Attributes
    ----------
    name : str
        The task's ledger name.
    state : str
        ``"done"``, ``"failed"`` or ``"invalid"``.
    error : str or None
        Why it failed or was invalid.
    duration : float
        Seconds spent on the task.
    host : str
        Where it ran.
    outputs : dict
        Stamp of every output written, by reference.
    written : dict
        Output path -> (file stamp, stamps of the keys written): what the
        ledger should remember of each output file.
    skipped_inputs : dict
        Plate jobs: inputs left out as invalid, with the reason.
    detail : str or None
        The traceback of a failure.
    recheck : bool
        An invalid verdict to check again on every run (its reason lies
        outside the file's content).
    warnings : list of str
        Warnings raised while the task was validated and run.
    stop : str or None
        The machine lacks what the run needs (disk space, file handles): the
        run must stop, and this task gets no record.
    """

    name: str
    state: str
    error: str | None = None
    duration: float = 0.0
    host: str = ""
    outputs: dict = field(default_factory=dict)
    written: dict = field(default_factory=dict)
    skipped_inputs: dict = field(default_factory=dict)
    detail: str | None = None
    recheck: bool = False
    warnings: list[str] = field(default_factory=list)
    stop: str | None = None


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _validate(job: BatchJob, path: str) -> InvalidInputError | None:
    """What is wrong with input ``path`` for ``job``, or None; a resource error propagates."""
    try:
        problem = check_result(job.validate_input(path), "validate_input")
    except InvalidInputError as err:
        return err
    except OSError as err:
        if resource_error(err) is not None:
            raise
        return input_error(err, path)
    except Exception as err:  # a hook that raises calls its input invalid
        return InvalidInputError(_describe(err))
    return InvalidInputError(problem) if problem else None


def _validate_inputs(job: BatchJob, item: WorkItem) -> tuple[dict[str, InvalidInputError], list[str]]:
    """Problems of the inputs of ``item`` by path, and the warnings raised while checking them.

    An input this job object found valid before, with the same stat stamp,
    is not checked again: a watcher runs its plate jobs again and again over
    every container of the plate, and should check only the new and changed
    ones.
    """
    problems, notes = {}, []
    known_valid = job.__dict__.setdefault("_valid_inputs", {})  # path -> stat stamp when found valid
    for path in item.inputs:
        stamp = file_stamp(path)
        if stamp is not None and known_valid.get(path) == stamp:
            continue
        with captured_warnings() as caught:
            problem = _validate(job, path)
        prefix = f"{os.path.basename(path)}: " if len(item.inputs) > 1 else ""
        notes += [prefix + message for message in caught]
        if problem is not None:
            problems[path] = problem
            known_valid.pop(path, None)
        elif stamp is not None and not caught:
            known_valid[path] = stamp
    return problems, notes


def _verdict(job: BatchJob, item: WorkItem, err: BaseException) -> FileResult:
    """The result of a task whose run (or finishing) raised ``err``."""
    if isinstance(err, InvalidInputError):  # raw-file trouble found only when reading the pixels
        return FileResult(item.name, INVALID, str(err), recheck=err.recheck)
    stop = resource_error(err, item.outputs[0] if item.outputs else None)
    if stop is not None:
        if job.output_keys:
            for output in item.outputs:
                discard_if_hdf5(output)
        return FileResult(item.name, FAILED, str(stop), stop=str(stop))
    return FileResult(item.name, FAILED, _describe(err), detail=traceback.format_exc())


def discard_if_hdf5(path: str) -> None:
    """Give up an HDF5 container that was being written when the disk filled up.

    HDF5 updates one file in place: a write cut short can leave it opening
    fine but broken inside (``addr overflow`` on the next write). It is
    renamed to a temporary name (no space needed), which the next run removes
    (:func:`batchlib.workflow.run_workflow`); the job that creates it rebuilds
    it from the raw image. N5 and Zarr keep each key in files of its own: a
    key cut short has no stamp and is written again, so they are kept.
    """
    if backend_of(path).name == "h5" and os.path.isfile(path):
        with contextlib.suppress(OSError):
            os.replace(path, temporary_sibling(path))


def _attribute(results: list[FileResult], items: list[WorkItem], messages: list[str]) -> None:
    """Attach the warnings of a call of run to the tasks they name (to the first one if they name none)."""
    if len(items) == 1:
        results[0].warnings += messages
        return
    names = [{os.path.basename(p) for p in (*item.inputs, *item.outputs)} for item in items]
    for message in messages:
        owners = [r for r, own in zip(results, names) if any(n in message for n in own)]
        if owners:
            for result in owners:
                result.warnings.append(message)
        else:
            results[0].warnings.append(f"in a batch of {len(items)} files from {items[0].name}: {message}")


def _finish_outputs(job: BatchJob, item: WorkItem, temporaries: dict[str, str]) -> FileResult:
    """Move temporary outputs into place, validate, stamp keys, stat files."""
    result = FileResult(item.name, DONE)
    for output in item.outputs:
        if output in temporaries:
            tmp = temporaries[output]
            if not os.path.lexists(tmp):
                raise FileNotFoundError(f"run() wrote no output {output} (expected at the given path {tmp})")
            replace(tmp, output)
        problem = check_result(job.validate_output(output), "validate_output")
        if problem:
            raise OutputError(problem)
        out_name = os.path.basename(output)
        keys = {}
        if job.output_keys:
            keys = {key: new_key_stamp(job.name) for key in job.output_keys}
            with open_file(output, "a") as f:
                write_key_stamps(f, keys)
        file_stamp = stat_stamp(os.stat(output))
        result.written[output] = (file_stamp, keys)
        if keys:
            result.outputs.update({ref(out_name, k): s for k, s in keys.items()})
        else:
            result.outputs[ref(out_name)] = file_stamp
    return result


def set_aside_if_corrupt(path: str) -> str | None:
    """Move a container that no longer opens to ``batchlib/corrupt/``; return where.

    The job that creates the container then rebuilds it from its raw input;
    the unreadable file is kept for inspection, not deleted.
    """
    if not (is_container(path) and os.path.exists(path)):
        return None
    try:
        open_file(path, "r").close()
        return None
    except ContainerError:
        aside_folder = os.path.join(os.path.dirname(path), BOOKKEEPING_FOLDER, "corrupt")
        os.makedirs(aside_folder, exist_ok=True)
        aside = os.path.join(aside_folder, f"{time.strftime('%Y%m%d-%H%M%S')}-{os.path.basename(path)}")
        os.replace(path, aside)
        return aside


def _run_items(job: BatchJob, items: list[WorkItem], kwargs: dict) -> tuple[list[FileResult], bool]:
    """Call job.run on ``items`` at once; return one result per item and whether run raised."""
    atomic = job.atomic_outputs and not job.output_keys
    temporaries = {o: str(temporary_sibling(o)) for item in items for o in item.outputs} if atomic else {}
    if job.per_plate:
        inputs = [path for item in items for path in item.inputs]
    elif job.group_by:  # one list of files (a site's channels) per output
        inputs = [list(item.inputs) for item in items]
    else:
        inputs = [item.inputs[0] for item in items]
    outputs = [temporaries.get(o, o) for item in items for o in item.outputs]
    start = time.perf_counter()
    if job.output_keys:  # a job that creates containers rebuilds unreadable ones
        for item in items:
            for output in item.outputs:
                if output not in item.inputs:
                    set_aside_if_corrupt(output)
    caught: list[str] = []
    try:
        with captured_warnings() as caught:
            job.run(inputs, outputs, **kwargs)
        results = []
        for item in items:
            try:
                results.append(_finish_outputs(job, item, temporaries))
            except Exception as err:
                results.append(_verdict(job, item, err))
        _attribute(results, items, caught)
        return _timed(results, start), False
    except Exception as err:
        failed = [_verdict(job, item, err) for item in items]
        _attribute(failed, items, caught)
        return _timed(failed, start), True
    finally:
        for tmp in temporaries.values():
            if os.path.lexists(tmp):
                remove_path(tmp)


def _timed(results: list[FileResult], start: float) -> list[FileResult]:
    each = (time.perf_counter() - start) / max(len(results), 1)
    for result in results:
        result.duration = each
    return results


def process_batch(
    job: BatchJob, items: list[WorkItem], kwargs: dict, ignore_invalid_inputs: bool = False
) -> list[FileResult]:
    """Validate, run and finish a batch of tasks; one result per task.

    Invalid inputs are not passed to ``run``. If ``run`` fails on a batch of
    several files, each file is run again alone, so one bad file does not
    fail its batch-mates. If the machine lacks what the run needs (disk
    space), the tasks not finished get a ``stop`` result and nothing more runs.
    """
    host = socket.gethostname()
    results: dict[str, FileResult] = {}
    runnable: list[WorkItem] = []
    notes: dict[str, list[str]] = {}
    for item in items:
        try:
            problems, notes[item.name] = _validate_inputs(job, item)
        except OSError as err:  # the machine, not the file (too many open files)
            results[item.name] = _verdict(job, item, err)
            continue
        if job.per_plate and problems and ignore_invalid_inputs:
            valid = [p for p in item.inputs if p not in problems]
            skipped = {os.path.basename(p): str(why) for p, why in problems.items()}
            if valid:
                runnable.append(WorkItem(item.name, valid, item.outputs))
                results[item.name] = FileResult(item.name, DONE, skipped_inputs=skipped)
                continue
        if problems:
            error = "; ".join(map(str, problems.values()))
            recheck = any(p.recheck for p in problems.values())
            results[item.name] = FileResult(item.name, INVALID, error, skipped_inputs={}, recheck=recheck)
        else:
            runnable.append(item)
    if any(r.stop for r in results.values()):
        runnable = []
    if runnable:
        batch_results, raised = _run_items(job, runnable, kwargs)
        if raised and len(runnable) > 1 and not any(r.stop for r in batch_results):
            batch_results = [r for item in runnable for r in _run_items(job, [item], kwargs)[0]]
        for result in batch_results:
            earlier = results.get(result.name)
            if earlier is not None:
                result.skipped_inputs = earlier.skipped_inputs
            results[result.name] = result
    stop = next((r.stop for r in results.values() if r.stop), None)
    for item in items:  # not run because the run stops
        results.setdefault(item.name, FileResult(item.name, FAILED, stop, stop=stop))
    for name, messages in notes.items():
        results[name].warnings[:0] = messages
    ordered = [results[item.name] for item in items]
    for result in ordered:
        result.host = host
    return ordered


def process_batches(
    job: BatchJob, batches: list[list[WorkItem]], kwargs: dict, ignore_invalid_inputs: bool = False
) -> list[FileResult]:
    """Process several batches in one call (fewer round trips to a pool); stop at a resource error."""
    results: list[FileResult] = []
    for batch in batches:
        done = process_batch(job, batch, kwargs, ignore_invalid_inputs)
        results += done
        if any(r.stop for r in done):
            break
    return results


__all__ = ["WorkItem", "FileResult", "process_batch", "process_batches"]
