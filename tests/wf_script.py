"""A workflow script for the tests that run workflows in a subprocess.

python wf_script.py PLATE RAW [--delay S] [--n-jobs N] [--wait]
"""

import argparse
import sys

from sample_jobs import CopyText, ImportText, Scale, SumPlate

from batchlib import run_workflow
from batchlib.cli import run_and_exit_code


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("raw")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--wait", action="store_true")
    args = parser.parse_args()
    jobs = [CopyText(delay=args.delay), ImportText(input_folder=args.raw), Scale(), SumPlate()]
    return run_and_exit_code(
        lambda: run_workflow(
            "wf", args.folder, jobs, input_folder=args.raw, n_jobs=args.n_jobs, wait=args.wait, progress=False
        )
    )


if __name__ == "__main__":
    sys.exit(main())
