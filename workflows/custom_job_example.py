"""Example workflow script: channel statistics of every raw image of a plate.

    python workflows/custom_job_example.py -c configs/custom_job_example.conf
    python workflows/custom_job_example.py --folder plate --input-folder raw --n-jobs 2

Rerun it after new images arrive: only those are processed.
"""

import sys

from batchlib import workflow_main
from batchlib.config import workflow_parser
from batchlib.jobs.examples import ChannelStatistics, StatisticsTable


def main(argv=None) -> int:
    parser = workflow_parser(__doc__.split("\n\n")[0])
    parser.add("--input-pattern", default="*.tiff", help="glob of the raw images")
    jobs = lambda args: [ChannelStatistics(input_pattern=args.input_pattern), StatisticsTable()]  # noqa: E731
    return workflow_main("ChannelStatisticsWorkflow", jobs, parser=parser, argv=argv)


if __name__ == "__main__":  # worker processes import this file: only the main process runs the workflow
    sys.exit(main())
