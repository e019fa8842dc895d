"""Command-line and config-file options shared by workflow scripts.

Workflow scripts build their parser with :func:`workflow_parser`, add their
own options, and pass :func:`run_options` to :func:`batchlib.run_workflow`.
Every option can be set in a config file (``-c my.conf``, ``key = value``
lines) and overridden on the command line (configargparse).
"""

from __future__ import annotations

import argparse

import configargparse


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: ...)" to an option's help only where it tells something.

    Not when the help already states the default (``"(default: the
    model's)"``), nor when the default is None (no value) or False (a flag).

    Examples
    --------
    >>> parser = argparse.ArgumentParser(formatter_class=DefaultsHelpFormatter)
    >>> _ = parser.add_argument("--n", type=int, default=1, help="workers")
    >>> _ = parser.add_argument("--t", type=float, help="threshold (default: the model's)")
    >>> _ = parser.add_argument("--gpu", action="store_true", help="use a GPU")
    >>> for line in parser.format_help().splitlines()[-3:]:
    ...     print(line.strip())
    --n N       workers (default: 1)
    --t T       threshold (default: the model's)
    --gpu       use a GPU
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def at_least(minimum: int):
    """An argparse ``type``: an integer of at least ``minimum`` (checked when the options are parsed).

    Examples
    --------
    >>> at_least(1)("4")
    4
    >>> at_least(1)("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected an integer >= 1, got '0'
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"  # what argparse names in its messages
    return parse


def number_in(low: float, high: float):
    """An argparse ``type``: a number from ``low`` to ``high`` (inclusive).

    Examples
    --------
    >>> number_in(0, 1)("0.5")
    0.5
    >>> number_in(0, 1)("1.5")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a number from 0 to 1, got '1.5'
    """

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a number from {low:g} to {high:g}, got {text!r}")
        return value

    parse.__name__ = f"number from {low:g} to {high:g}"
    return parse


def workflow_parser(description: str, default_config_files: list[str] | None = None) -> configargparse.ArgParser:
    """A parser with the options every workflow script has.

    Options: ``-c/--config``, ``--folder``, ``--input-folder``, ``--n-jobs``,
    ``--executor``, ``--dask-scheduler``, ``--force-recompute``,
    ``--ignore-invalid-inputs``, ``--ignore-failed-outputs``, ``--wait``,
    ``--explain``, ``--no-progress``.
    """
    parser = configargparse.ArgParser(
        description=description,
        default_config_files=default_config_files or [],
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add(
        "-c",
        "--config",
        is_config_file=True,
        help="config file (key = value lines); options given on the command line override it",
    )
    parser.add(
        "--folder", required=True, help="plate folder: outputs, per-image containers and batchlib/ bookkeeping go here"
    )
    parser.add("--input-folder", default=None, help="folder with the raw images, if not the plate folder")
    parser.add("--n-jobs", type=at_least(1), default=1, help="worker processes")
    parser.add(
        "--executor",
        choices=["serial", "processes", "dask"],
        default=None,
        help="where files run (default: dask if --dask-scheduler, processes if --n-jobs > 1, else serial)",
    )
    parser.add(
        "--dask-scheduler",
        default=None,
        help="address of a dask.distributed scheduler, e.g. "
        "tcp://10.0.0.5:8786 (one started by dask-jobqueue on SLURM)",
    )
    parser.add("--force-recompute", action="store_true", help="process every file again")
    parser.add("--ignore-invalid-inputs", action="store_true", help="record invalid inputs and go on")
    parser.add("--ignore-failed-outputs", action="store_true", help="record failed files and go on")
    parser.add("--wait", action="store_true", help="wait for the folder lock instead of exiting with code 75")
    parser.add("--explain", action="store_true", help="print which files each job would run and why; run nothing")
    watch = parser.add_argument_group("watch mode (process the plate while the microscope writes it)")
    watch.add_argument("--watch", action="store_true", help="watch the raw folder and process files as they settle")
    watch.add_argument(
        "--settle", type=number_in(0, 3600), default=3.0, help="seconds a raw file must stay unchanged (default 3)"
    )
    watch.add_argument(
        "--poll", type=number_in(0.01, 3600), default=None, help="look every POLL seconds instead of file events"
    )
    watch.add_argument(
        "--plate-interval", type=number_in(0, 86400), default=60.0, help="plate-level jobs at most this often (s)"
    )
    watch.add_argument(
        "--until-idle", type=number_in(0, 86400), default=None, help="the plate is complete after this long idle (s)"
    )
    watch.add_argument(
        "--expected-images", type=at_least(1), default=None, help="the plate is complete with this many raw files"
    )
    watch.add_argument("--marker", default=None, help="a file the acquisition writes when the plate is complete")
    watch.add_argument("--forever", action="store_true", help="go on watching after the plate is complete")
    watch.add_argument(
        "--plates-root",
        default=None,
        help="a folder of plate folders: each is watched (--folder is then the root of the plates' outputs)",
    )
    watch.add_argument("--max-plates", type=at_least(1), default=2, help="plates watched at once (--plates-root)")
    parser.add("--no-progress", action="store_true", help="no progress bars")
    return parser


def run_options(args: configargparse.Namespace) -> dict:
    """Keyword arguments of :func:`batchlib.run_workflow` from parsed options."""
    return {
        "input_folder": args.input_folder,
        "force_recompute": args.force_recompute,
        "ignore_invalid_inputs": args.ignore_invalid_inputs,
        "ignore_failed_outputs": args.ignore_failed_outputs,
        "n_jobs": args.n_jobs,
        "executor": args.executor,
        "dask_scheduler": args.dask_scheduler,
        "wait": args.wait,
        "progress": not args.no_progress,
    }
