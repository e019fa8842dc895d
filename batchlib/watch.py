"""Watch mode: process a plate while the microscope writes it.

The watcher holds the plate's folder lock for as long as it watches. It
looks at the raw folder (woken by file events from ``watchfiles``, or every
``poll`` seconds on network shares where events are missed; while a file
settles, again when it would have settled), takes a file only once its size and
modification time have not changed for ``settle`` seconds, and runs the
per-image jobs on what settled (files still being written are hidden from
every job of that run). Plate-level jobs (tables, exports, QC, upload) run
at most every ``plate_interval`` seconds while images arrive, and once more
when the plate is complete: an expected number of raw files (given, or
what the plate metadata lists), a marker file the acquisition writes, or
``until_idle`` seconds without a new file. Then it returns, unless told to
go on watching (``forever``).

Ctrl-C or SIGTERM stop it after the current batch: the lock is released and
the status says so; after ``kill -9`` a restart goes on where it stopped
(the ledger knows what was done). While it watches, ``batchlib status``
shows since when, by which process, and what is pending
(``batchlib/watch.status``).

Deciding is kept apart from doing: :func:`settle_files`,
:func:`plate_jobs_due` and :func:`completion` are pure functions of what was
seen and when.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import BatchJob
from .errors import ConfigError
from .executors import check_executor_options
from .job_run import JobResult
from .log import configure, get_logger
from .scan import match
from .state import BOOKKEEPING_FOLDER
from .state.lock import FolderLock, pid_alive
from .state.status import now_iso, read_status, write_status

#: Name of the watcher's status file in ``batchlib/``.
WATCH_STATUS = "watch"


@dataclass(frozen=True)
class Seen:
    """A raw file as last seen: its size and modification time, and since when (monotonic seconds) unchanged."""

    size: int
    mtime_ns: int
    since: float


def settle_files(
    seen: dict[str, Seen],
    listing: dict[str, tuple[int, int]],
    now: float,
    settle: float,
    wall_now: float | None = None,
) -> tuple[dict[str, Seen], set[str], set[str]]:
    """What is settled: a pure function of the previous sightings and the folder now.

    Parameters
    ----------
    seen : dict
        Name -> :class:`Seen`, from the previous look.
    listing : dict
        Name -> (size, mtime_ns) now.
    now : float
        Monotonic time of this look.
    settle : float
        Seconds a file must stay unchanged.
    wall_now : float, optional
        The wall-clock time (``time.time()``) of this look: a file newly seen
        counts as unchanged since its modification time (so a file written
        long ago settles at once), not since it was seen.

    Returns
    -------
    (seen, settled, unsettled)
        The updated sightings, and the names unchanged for ``settle`` seconds, and the others.

    Examples
    --------
    >>> seen, settled, unsettled = settle_files({}, {"a.tif": (10, 1)}, now=100.0, settle=3)
    >>> settled, unsettled
    (set(), {'a.tif'})
    >>> seen, settled, unsettled = settle_files(seen, {"a.tif": (10, 1)}, now=103.5, settle=3)
    >>> settled
    {'a.tif'}
    >>> settle_files(seen, {"a.tif": (20, 2)}, now=104.0, settle=3)[1]  # it grew: the clock starts again
    set()
    >>> settle_files({}, {"old.tif": (10, 50 * 10**9)}, now=0.0, settle=3, wall_now=60.0)[1]  # written 10 s ago
    {'old.tif'}
    """
    updated, settled, unsettled = {}, set(), set()
    for name, (size, mtime_ns) in listing.items():
        old = seen.get(name)
        if old is not None and (old.size, old.mtime_ns) == (size, mtime_ns):
            since = old.since
        else:  # new or changed: unchanged since its modification time, as far as the clocks tell
            since = now - (max(0.0, wall_now - mtime_ns / 1e9) if wall_now is not None else 0.0)
        updated[name] = Seen(size, mtime_ns, since)
        (settled if now - since >= settle else unsettled).add(name)
    return updated, settled, unsettled


def plate_jobs_due(last_run: float | None, new_work: bool, now: float, interval: float) -> bool:
    """Whether the plate-level jobs run now: work was done since their last run, at most every ``interval``.

    Examples
    --------
    >>> plate_jobs_due(None, True, 5.0, 60), plate_jobs_due(0.0, True, 30.0, 60), plate_jobs_due(0.0, False, 99, 60)
    (True, False, False)
    """
    return new_work and (last_run is None or now - last_run >= interval)


def completion(
    settled: int,
    unsettled: int,
    expected: int | None,
    marker_present: bool,
    idle_for: float,
    until_idle: float | None,
) -> tuple[bool, str]:
    """Whether the plate is complete, and why (a pure function).

    Examples
    --------
    >>> completion(96, 0, 96, False, 0.0, None)
    (True, 'all 96 expected raw files are there')
    >>> completion(95, 0, 96, False, 0.0, None)
    (False, '95 of 96 expected raw files settled')
    >>> completion(95, 1, 96, True, 0.0, None)  # never while a file is being written
    (False, '1 raw file(s) still being written')
    >>> completion(10, 0, None, True, 0.0, None)
    (True, 'the acquisition wrote its end marker')
    >>> completion(10, 0, None, False, 31.0, 30.0)
    (True, 'no new raw file for 31 s')
    """
    if unsettled:
        return False, f"{unsettled} raw file(s) still being written"
    if expected is not None and settled >= expected:
        return True, f"all {expected} expected raw files are there"
    if marker_present:
        return True, "the acquisition wrote its end marker"
    if until_idle is not None and idle_for >= until_idle:
        return True, f"no new raw file for {idle_for:.0f} s"
    if expected is not None:
        return False, f"{settled} of {expected} expected raw files settled"
    return False, "waiting for more raw files"


@dataclass
class WatchOptions:
    """How to watch (see :func:`watch_workflow`)."""

    settle: float = 3.0
    poll: float | None = None
    plate_interval: float = 60.0
    until_idle: float | None = None
    expected: int | None = None
    marker: str | None = None
    forever: bool = False
    run_options: dict = field(default_factory=dict)


def watch_workflow(
    name: str,
    folder: str | os.PathLike,
    jobs: Sequence[BatchJob | tuple[BatchJob, dict]],
    input_folder: str | os.PathLike | None = None,
    settle: float = 3.0,
    poll: float | None = None,
    plate_interval: float = 60.0,
    until_idle: float | None = None,
    expected: int | None = None,
    marker: str | None = None,
    forever: bool = False,
    **run_options: Any,
) -> dict[str, JobResult]:
    """Run ``jobs`` on plate ``folder`` as its raw files arrive; return the last results when the plate is complete.

    Parameters
    ----------
    name, folder, jobs, input_folder
        As for :func:`batchlib.run_workflow`; the raw files watched are the
        first job's inputs.
    settle : float
        Seconds a raw file's size and modification time must stay unchanged.
    poll : float, optional
        Look every ``poll`` seconds instead of waiting for file events (network shares).
    plate_interval : float
        Plate-level jobs run at most this often while images arrive.
    until_idle : float, optional
        The plate is complete after this many seconds without a new raw file.
    expected : int, optional
        The plate is complete once this many raw files have settled
        (default: the files the first job's plate metadata lists, if any).
    marker : str, optional
        A file name in the raw folder that the acquisition writes at its end.
    forever : bool
        Go on watching after the plate is complete.
    **run_options
        Options of :func:`batchlib.run_workflow` (``n_jobs``, ``executor``, ...).
        Invalid and failed files are recorded and watching goes on
        (``ignore_invalid_inputs`` and ``ignore_failed_outputs`` are on).

    Returns
    -------
    dict
        :class:`~batchlib.job_run.JobResult` by job name, of the last run of each job.
    """
    options = WatchOptions(settle, poll, plate_interval, until_idle, expected, marker, forever, run_options)
    return Watcher(name, os.path.abspath(folder), list(jobs), input_folder, options).run()


class Watcher:
    """The watch loop of one plate (see :func:`watch_workflow`)."""

    def __init__(self, name: str, folder: str, jobs: list, input_folder, options: WatchOptions):
        from .workflow import _normalize_jobs

        if options.settle < 0 or (options.poll is not None and options.poll <= 0) or options.plate_interval < 0:
            raise ConfigError("watch: --settle and --plate-interval must be >= 0 and --poll > 0")
        self.name, self.folder, self.options = name, folder, options
        self.jobs = _normalize_jobs(jobs)
        if not self.jobs:
            raise ConfigError("watch: no jobs to run")
        first, kwargs = self.jobs[0]
        layout = first.layout(folder, os.fspath(input_folder) if input_folder else None, kwargs)
        self.raw_folder, self.pattern = layout.input_folder, layout.input_pattern
        self.input_folder = os.fspath(input_folder) if input_folder else None
        self.per_image = [(j, k) for j, k in self.jobs if not j.per_plate]
        self.per_plate = [(j, k) for j, k in self.jobs if j.per_plate]
        self.expected = options.expected if options.expected is not None else first.expected_inputs()
        self.logger = get_logger(f"{name}.watch")
        self.bookkeeping = os.path.join(folder, BOOKKEEPING_FOLDER)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.results: dict[str, JobResult] = {}

    # ------------------------------------------------------------------ looking
    def listing(self) -> tuple[dict[str, tuple[int, int]], bool]:
        """Raw files (size, mtime_ns) by name, and whether the end marker is there."""
        entries: dict[str, tuple[int, int]] = {}
        marker = False
        try:
            with os.scandir(self.raw_folder) as it:
                for entry in it:
                    if entry.name == self.options.marker:
                        marker = True
                    elif entry.name[0] != "." and entry.is_file():
                        info = entry.stat()
                        entries[entry.name] = (info.st_size, info.st_mtime_ns)
        except FileNotFoundError:
            pass
        names = set(match(list(entries), self.pattern))
        return {n: v for n, v in entries.items() if n in names}, marker

    def wait(self, seconds: float) -> None:
        """Sleep until woken by a file event (or a stop), at most ``seconds``."""
        self._wake.wait(seconds)
        self._wake.clear()

    def _events(self) -> None:
        """Wake the loop on every change in the raw folder (a background thread; file events)."""
        import watchfiles

        try:
            for _ in watchfiles.watch(self.raw_folder, stop_event=self._stop, debounce=200, recursive=False):
                self._wake.set()
        except Exception as err:  # no events here (an unsupported file system): polling takes over
            self.logger.warning("file events unavailable (%s); looking every second instead", err)

    # ------------------------------------------------------------------ doing
    def run_jobs(self, jobs: list, unsettled: set[str]) -> None:
        from .workflow import run_workflow

        if not jobs:
            return
        options = {
            **self.options.run_options,
            "ignore_invalid_inputs": True,
            "ignore_failed_outputs": True,
            "lock": self.lock,
            "exclude_inputs": {self.raw_folder: unsettled},
        }
        results = run_workflow(self.name, self.folder, jobs, input_folder=self.input_folder, **options)
        self.results.update(results)
        self.options.run_options["force_recompute"] = False  # a forced recompute is done once, not every batch

    def warm_up(self) -> None:
        """Let each job load what its first run would (imports, a model), while nothing has arrived yet.

        Only when the jobs run in this process (no worker pool, no dask): a
        pool's workers load their own. A failing warm-up is only logged; the
        job's run reports the problem where it belongs.
        """
        options = self.options.run_options
        kind = check_executor_options(options.get("executor"), options.get("n_jobs", 1), options.get("dask_scheduler"))
        if kind != "serial":
            return
        for job, _ in self.jobs:
            try:
                job.warm_up()
            except Exception as err:
                why = f"{type(err).__name__}: {err}"
                self.logger.warning("%s: warm-up failed (%s); its first run loads what it needs", job.name, why)

    def write_status(self, state: str, pending: dict) -> None:
        write_status(
            self.bookkeeping,
            WATCH_STATUS,
            {
                "watching": state == "watching",
                "state": state,
                "pid": os.getpid(),
                "since": self.since,
                "updated": now_iso(),
                "raw_folder": self.raw_folder,
                "pending": pending,
            },
        )

    def run(self) -> dict[str, JobResult]:
        os.makedirs(self.bookkeeping, exist_ok=True)
        configure()
        self.lock = FolderLock(self.bookkeeping, workflow=f"{self.name} (watching)")
        self.lock.acquire(wait=bool(self.options.run_options.get("wait")))
        self.options.run_options.pop("wait", None)
        self.since = now_iso()
        self.write_status("watching", {"why": "starting"})
        handlers = install_stop_handlers(self._stop, self._wake)
        events = None
        if self.options.poll is None:
            events = threading.Thread(target=self._events, name="batchlib-watch-events", daemon=True)
            events.start()
        self.warm_up()
        state = "watching"
        try:
            state = self._loop()
        finally:
            self._stop.set()
            restore_handlers(handlers)
            try:
                self.write_status(state, {})
            finally:
                self.lock.release()
        return self.results

    def _loop(self) -> str:
        opts, seen, done = self.options, {}, {}
        last_plate, work_since_plate, last_new = None, False, time.monotonic()
        self.logger.info("watching %s for %s (settle %g s)", self.raw_folder, self.pattern, opts.settle)
        while True:
            now = time.monotonic()
            listing, marker = self.listing()
            seen, settled, unsettled = settle_files(seen, listing, now, opts.settle, time.time())
            fresh = {n for n in settled if done.get(n) != listing[n]}
            if fresh or unsettled:
                last_new = now  # the idle clock runs only while nothing arrives
            if fresh:
                self.logger.info("%d raw file(s) settled; processing", len(fresh))
                # Plate jobs due anyway run in the same workflow run: one run's fixed cost, not two.
                with_plate = plate_jobs_due(last_plate, True, now, opts.plate_interval)
                self.run_jobs(self.jobs if with_plate else self.per_image, unsettled)
                done.update({n: listing[n] for n in settled})
                work_since_plate = not with_plate
                if with_plate:
                    last_plate = time.monotonic()
            complete, why = completion(
                len(settled), len(unsettled), self.expected, marker, time.monotonic() - last_new, opts.until_idle
            )
            if plate_jobs_due(last_plate, work_since_plate, time.monotonic(), opts.plate_interval) and not complete:
                self.run_jobs(self.per_plate, unsettled)
                last_plate, work_since_plate = time.monotonic(), False
            self.write_status("watching", {"settling": sorted(unsettled), "complete": complete, "why": why})
            if complete and not opts.forever:
                self.logger.info("plate complete: %s; final plate-level jobs", why)
                self.run_jobs(self.jobs, unsettled)  # every job once more: nothing left behind
                return "complete"
            if self._stop.is_set():
                self.logger.info("stopped; the lock is released, a restart goes on where this left off")
                return "stopped"
            # Idle with file events: wait for one (a long timeout only as a safety net); polling: the next look.
            step = opts.poll if opts.poll is not None else 60.0
            if unsettled:  # look again when the first of them would have settled
                due = min(seen[n].since for n in unsettled) + opts.settle - time.monotonic()
                step = min(step, max(0.05, due))
            if opts.until_idle is not None:
                step = min(step, max(0.1, opts.until_idle - (time.monotonic() - last_new)))
            self.wait(step)
            if self._stop.is_set():
                self.logger.info("stopped; the lock is released, a restart goes on where this left off")
                return "stopped"


def install_stop_handlers(stop: threading.Event, wake: threading.Event) -> dict:
    """Ctrl-C and SIGTERM set ``stop`` (the current batch finishes); a second Ctrl-C interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        wake.set()

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handler)
    return previous


def restore_handlers(handlers: dict) -> None:
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def watch_state(folder: str | os.PathLike) -> dict | None:
    """What ``batchlib/watch.status`` says, with ``alive``: whether its process still runs on this host."""
    status = read_status(os.path.join(os.fspath(folder), BOOKKEEPING_FOLDER), WATCH_STATUS)
    if status is None:
        return None
    alive = bool(status.get("watching") and status.get("pid") and pid_alive(int(status["pid"])))
    return {**status, "alive": alive}
