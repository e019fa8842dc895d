"""The ``batchlib`` command: status, explain, unlock (and the helpers that
workflow scripts use to turn errors into exit codes).

Exit codes (DESIGN.md): 0 all done; 1 some files failed or were invalid and
were not ignored; 2 bad usage or configuration; 75 folder locked.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from .errors import BatchlibError, ConfigError, FolderLockedError
from .workflow import JobResult, exit_code

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 75


def error_exit_code(err: BatchlibError) -> int:
    """Print ``err`` as one line on stderr and return its exit code (75 locked, 2 usage, else 1)."""
    print(f"batchlib: {err}", file=sys.stderr)
    if isinstance(err, FolderLockedError):
        return EXIT_LOCKED
    return EXIT_USAGE if isinstance(err, ConfigError) else EXIT_FAILED


def run_and_exit_code(run: Callable[[], dict[str, JobResult]]) -> int:
    """Call ``run`` (which runs a workflow) and return the process exit code.

    Errors become their exit code and a one-line message on stderr, never a
    traceback: a locked folder 75, a bad option 2.
    """
    try:
        return exit_code(run())
    except (FolderLockedError, ConfigError) as err:
        return error_exit_code(err)


def _status(args: argparse.Namespace) -> int:
    from .report import folder_status, format_status

    status = folder_status(args.folder)
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return EXIT_OK


def _explain(args: argparse.Namespace) -> int:
    from .report import explain

    print(explain(args.folder, args.job, None if args.all else 50))
    return EXIT_OK


def _unlock(args: argparse.Namespace) -> int:
    import socket
    import time

    from .report import bookkeeping_folder
    from .state.lock import describe_holder, lock_is_stale, read_lock, unlock

    bookkeeping = bookkeeping_folder(args.folder)
    holder = read_lock(bookkeeping)
    if holder is None:
        print(f"{args.folder} is not locked")
        return EXIT_OK
    stale, why = lock_is_stale(holder, socket.gethostname(), time.time())
    if not stale and not args.force:
        print(
            f"batchlib: the lock is held by a live run ({describe_holder(holder)}: {why}); "
            "pass --force to remove it anyway",
            file=sys.stderr,
        )
        return EXIT_LOCKED
    unlock(bookkeeping)
    print(f"removed the lock of {describe_holder(holder)}")
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    import os

    from .demo import write_demo_plate
    from .pipelines import cell_analysis_main

    raw = os.path.join(args.folder, "raw")
    results = os.path.join(args.folder, "DemoPlate")
    paths = write_demo_plate(raw, sites=args.sites, seed=args.seed)
    print(f"demo plate: {len(paths)} raw images in {raw}")
    code = cell_analysis_main(
        [
            "--input-folder",
            raw,
            "--folder",
            results,
            "--n-jobs",
            str(args.n_jobs),
            "--nuclei-method",
            args.nuclei_method,
        ]
    )
    plate = os.path.basename(os.path.abspath(results))
    print(f"""
results in {results}:
  per-image containers (*.h5)       Fiji: Plugins > PlateViewer, open {results}
  {plate}_table.hdf5          image and well tables (the viewer's default tables)
  {plate}.ome.zarr            napari --plugin napari-ome-zarr {os.path.join(results, plate + ".ome.zarr")}
  batchlib status {results}     what ran, what failed
""")
    return code


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``batchlib`` command."""
    parser = argparse.ArgumentParser(prog="batchlib", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("status", help="per job: done, failed, invalid, pending, state")
    p.add_argument("folder", help="plate folder")
    p.add_argument("--json", action="store_true", help="print JSON (the shape of DESIGN.md)")
    p.set_defaults(func=_status)

    p = sub.add_parser("explain", help="per job, which files would run and why")
    p.add_argument("folder", help="plate folder")
    p.add_argument("--job", help="only this job")
    p.add_argument("--all", action="store_true", help="list every file, not only the first 50 per job")
    p.set_defaults(func=_explain)

    p = sub.add_parser("demo", help="write a synthetic plate and run the cell-analysis workflow on it")
    p.add_argument("--folder", default="demo_plate", help="where the plate (raw/) and results (results/) go")
    p.add_argument("--sites", type=int, default=4, help="sites per well (2 wells)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the synthetic images")
    p.add_argument("--n-jobs", type=int, default=1, help="worker processes")
    p.add_argument(
        "--nuclei-method",
        default="stardist",
        choices=["stardist", "threshold"],
        help="nuclei segmentation (StarDist needs the cpu or gpu extra)",
    )
    p.set_defaults(func=_demo)

    p = sub.add_parser("unlock", help="remove the folder lock left by a run that is gone")
    p.add_argument("folder", help="plate folder")
    p.add_argument("--force", action="store_true", help="remove it even if its holder still seems alive")
    p.set_defaults(func=_unlock)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``batchlib`` console command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BatchlibError as err:
        return error_exit_code(err)


if __name__ == "__main__":
    sys.exit(main())
