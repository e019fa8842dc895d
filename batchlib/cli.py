"""The ``batchlib`` command: status, explain, unlock, demo, upload, download, export-crops.

Exit codes (:mod:`batchlib.exits`, which workflow scripts use too): 0 all
done; 1 some files failed or were invalid and were not ignored; 2 bad usage
or configuration; 75 folder locked.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from .errors import BatchlibError, ConfigError
from .exits import EXIT_FAILED, EXIT_LOCKED, EXIT_OK, EXIT_USAGE, error_exit_code, run_and_exit_code
from .s3.local import KINDS

# Workflow scripts written before batchlib.exits existed import these from here.
__all__ = ["EXIT_FAILED", "EXIT_LOCKED", "EXIT_OK", "EXIT_USAGE", "error_exit_code", "main", "run_and_exit_code"]


def _status(args: argparse.Namespace) -> int:
    from .report import folder_status, format_status

    status = folder_status(args.folder)
    print(json.dumps(status) if args.json else format_status(status))
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

    from .cell_analysis import cell_analysis_main
    from .demo import write_demo_plate

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
            "--omezarr",
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


def _export_crops(args: argparse.Namespace) -> int:
    from .crops import export_png

    written = export_png(args.plate, args.dest, wells=args.well)
    print(f"wrote {len(written)} crop folders (PNG) to {args.dest}")
    return EXIT_OK


def _transfer_options(args: argparse.Namespace):
    from .s3.transfer import MIB, TransferOptions

    return TransferOptions(
        args.part_size_mb * MIB, args.multipart_threshold_mb * MIB, args.concurrency, args.max_attempts
    )


def _locked_transfer(folder: str, name: str, wait: bool, transfer: Callable[[], object]):
    """Run ``transfer`` holding the folder lock, logging to ``batchlib/<name>.log``."""
    import os

    from .log import add_file_handler, configure, remove_handler
    from .state import BOOKKEEPING_FOLDER
    from .state.lock import FolderLock

    bookkeeping = os.path.join(folder, BOOKKEEPING_FOLDER)
    os.makedirs(bookkeeping, exist_ok=True)
    configure()
    lock = FolderLock(bookkeeping, workflow=name)
    lock.acquire(wait=wait)
    handler = add_file_handler(bookkeeping, name)
    try:
        return transfer()
    finally:
        remove_handler(handler)
        lock.release()


def _finish_transfer(report, dry_run: bool) -> int:
    print(report.dry_run_text() if dry_run else report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED


def _upload(args: argparse.Namespace) -> int:
    import os

    from .s3 import upload_plate

    if not os.path.isdir(args.folder):
        raise ConfigError(f"plate folder {args.folder!r} does not exist")
    options = _transfer_options(args)

    def transfer():
        return upload_plate(
            args.folder, args.destination, args.endpoint_url, args.include, args.kind, options, args.dry_run
        )

    report = transfer() if args.dry_run else _locked_transfer(args.folder, "Upload", args.wait, transfer)
    return _finish_transfer(report, args.dry_run)


def _download(args: argparse.Namespace) -> int:
    from .s3 import download_plate

    options = _transfer_options(args)

    def transfer():
        return download_plate(args.source, args.dest, args.endpoint_url, args.include, options, args.dry_run)

    report = transfer() if args.dry_run else _locked_transfer(args.dest, "Download", args.wait, transfer)
    return _finish_transfer(report, args.dry_run)


def _add_transfer_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--endpoint-url",
        help="an S3-compatible server (default: AWS); credentials come from the "
        "standard AWS chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an instance role",
    )
    p.add_argument(
        "--include",
        action="append",
        metavar="PATTERN",
        help="only paths matching this glob (a folder selects all below it); repeatable",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be transferred and why; send nothing")
    p.add_argument("--part-size-mb", type=int, default=16, help="part size of multipart transfers (>= 5)")
    p.add_argument("--multipart-threshold-mb", type=int, default=64, help="files this large go multipart")
    p.add_argument("--concurrency", type=int, default=8, help="files and parts in flight at once")
    p.add_argument("--max-attempts", type=int, default=5, help="attempts per request (backoff between them)")
    p.add_argument("--wait", action="store_true", help="if the folder is locked, wait for the lock")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``batchlib`` command."""
    parser = argparse.ArgumentParser(prog="batchlib", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("status", help="per job: done, failed, invalid, pending, state")
    p.add_argument("folder", help="plate folder")
    p.add_argument("--json", action="store_true", help="print JSON on one line (the fields of the text output)")
    p.set_defaults(func=_status)

    p = sub.add_parser("explain", help="per job, which files would run and why")
    p.add_argument("folder", help="plate folder")
    p.add_argument("--job", help="only this job")
    p.add_argument("--all", action="store_true", help="list every file, not only the first 50 per job")
    p.set_defaults(func=_explain)

    p = sub.add_parser("demo", help="write a synthetic plate and run the cell-analysis workflow on it")
    p.add_argument(
        "--folder",
        default="demo_plate",
        help="raw images go to <folder>/raw, results to <folder>/DemoPlate (default: demo_plate)",
    )
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

    p = sub.add_parser("upload", help="upload a plate's results to s3://bucket/prefix/<plate>/ (incremental)")
    p.add_argument("folder", help="plate folder")
    p.add_argument("destination", help="s3://bucket/prefix")
    p.add_argument("--kind", action="append", choices=KINDS, help="only these kinds of output; repeatable")
    _add_transfer_options(p)
    p.set_defaults(func=_upload)

    p = sub.add_parser("download", help="fetch a released plate (or parts of it) back from S3")
    p.add_argument("source", help="s3://bucket/prefix/<plate>")
    p.add_argument("dest", help="local plate folder to fill")
    _add_transfer_options(p)
    p.set_defaults(func=_download)

    p = sub.add_parser("export-crops", help="write a plate's crop store as PNG files (the --crop-format png layout)")
    p.add_argument("plate", help="plate folder (with <plate>_crops.parquet)")
    p.add_argument("dest", help="folder to write <image>.crops/ folders into")
    p.add_argument("--well", action="append", help="only this well (A01); repeatable")
    p.set_defaults(func=_export_crops)

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
