"""``workflow_main``: a workflow script in one call, as ``luigi.run()`` is.

A script names its workflow and says how to build its jobs from the parsed
options; ``workflow_main`` reads the options (config file, then command
line), answers ``--explain`` without running anything, runs the workflow
and returns the exit code (:mod:`batchlib.exits`)::

    import sys

    from batchlib import workflow_main
    from batchlib.jobs.examples import ChannelStatistics, StatisticsTable

    if __name__ == "__main__":  # worker processes import this file: they must not run it
        sys.exit(workflow_main("StatsWorkflow", lambda args: [ChannelStatistics(), StatisticsTable()]))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .exits import run_and_exit_code

if TYPE_CHECKING:
    import configargparse

    from .base import BatchJob


def workflow_main(
    name: str,
    make_jobs: Callable[[Any], Sequence[BatchJob]],
    parser: configargparse.ArgParser | None = None,
    argv: Sequence[str] | None = None,
    description: str | None = None,
    **run_overrides: Any,
) -> int:
    """Parse the options, then explain or run workflow ``name``; return the process exit code.

    Parameters
    ----------
    name : str
        The workflow's name (``batchlib/<name>.status`` and ``<name>.log``).
    make_jobs : callable
        Takes the parsed options, returns the job list. Called after the
        options parsed, inside the error handling, so a job's
        :class:`~batchlib.errors.ConfigError` becomes exit code 2.
    parser : configargparse.ArgParser, optional
        The script's parser, made with :func:`batchlib.config.workflow_parser`
        and given its own options; by default a plain one.
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).
    description : str, optional
        The default parser's description (``--help``).
    **run_overrides
        Options of :func:`batchlib.run_workflow` that replace those from the
        command line (e.g. ``input_folder=None`` when the import job is given
        the raw folder itself).

    Returns
    -------
    int
        0 all done; 1 files failed or were invalid (not ignored), or a
        resource ran out; 2 bad usage or configuration; 75 folder locked.
        ``--help`` and unparsable options exit from argparse itself (0 / 2).
    """
    from .config import run_options, workflow_parser

    parser = parser or workflow_parser(description or name)
    args = parser.parse_args(argv)
    if getattr(args, "plates_root", None):
        return _watch_plates_root(args, argv)

    def run() -> dict:
        from .report import explain_jobs
        from .workflow import run_workflow

        jobs = list(make_jobs(args))
        options = {**run_options(args), **run_overrides}
        if args.explain:
            print(explain_jobs(args.folder, jobs, options["input_folder"], options["force_recompute"]))
            return {}
        if getattr(args, "watch", False):
            from .watch import watch_workflow

            for flag in ("ignore_invalid_inputs", "ignore_failed_outputs"):  # always on while watching
                options.pop(flag, None)
            watched = {k: getattr(args, k) for k in ("settle", "poll", "plate_interval", "until_idle", "marker")}
            watched.update(expected=args.expected_images, forever=args.forever)
            watch_workflow(name, args.folder, jobs, **watched, **options)
            return {}  # watching records failures and goes on: a stop after completion is a success
        return run_workflow(name, args.folder, jobs, **options)

    return run_and_exit_code(run)


def _watch_plates_root(args: Any, argv: Sequence[str] | None) -> int:
    """``--plates-root``: this script once per plate folder, watching it (:func:`batchlib.watch.watch_plates_root`)."""
    import os
    import sys

    from .exits import EXIT_USAGE
    from .watch_root import child_argv, watch_plates_root

    script = os.path.abspath(sys.argv[0])
    if not script.endswith(".py") or not os.path.isfile(script):
        print(f"--plates-root runs the workflow script once per plate: run it as python <script>.py, not {script}")
        return EXIT_USAGE
    if not os.path.isdir(args.plates_root) or not args.folder:
        print(f"--plates-root {args.plates_root}: needs an existing folder of plates and --folder (the outputs' root)")
        return EXIT_USAGE
    options = child_argv(
        list(argv) if argv is not None else sys.argv[1:],
        ["--plates-root", "--max-plates", "--folder", "--input-folder", "--watch"],
    )
    return watch_plates_root(
        os.path.abspath(args.plates_root),
        os.path.abspath(args.folder),
        [sys.executable, script, *options],
        max_plates=args.max_plates,
        poll=args.poll or 2.0,
        until_idle=args.until_idle,
    )
