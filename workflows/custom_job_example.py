"""Example workflow script: channel statistics of every raw image of a plate.

    python workflows/custom_job_example.py -c configs/custom_job_example.conf
    python workflows/custom_job_example.py --folder plate --input-folder raw --n-jobs 2

Rerun it after new images arrive: only those are processed.
"""

import sys

from batchlib import run_workflow
from batchlib.cli import run_and_exit_code
from batchlib.config import run_options, workflow_parser
from batchlib.jobs.examples import ChannelStatistics, StatisticsTable
from batchlib.report import explain_jobs


def main(argv=None) -> int:
    parser = workflow_parser(__doc__.split("\n\n")[0])
    parser.add("--input-pattern", default="*.tiff", help="glob of the raw images")
    args = parser.parse_args(argv)
    jobs = [ChannelStatistics(input_pattern=args.input_pattern), StatisticsTable()]
    if args.explain:
        print(explain_jobs(args.folder, jobs, args.input_folder, args.force_recompute))
        return 0
    return run_and_exit_code(lambda: run_workflow("ChannelStatisticsWorkflow", args.folder, jobs, **run_options(args)))


if __name__ == "__main__":
    sys.exit(main())
