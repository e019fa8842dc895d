"""Profiling steps over a batch of plates: normalize each plate, select features and build consensus profiles.

    python workflows/profiling_batch_workflow.py -c configs/profiling_batch.conf
    python workflows/profiling_batch_workflow.py --batch-folder screens/Batch1 --consensus-by Metadata_broad_sample

Each plate folder of the batch must have been through the cell-analysis
workflow (its export). Rerun it as plates are added or reimaged: only the
plates whose profiles changed are normalized again.
"""

import sys

from batchlib.batch import batch_main

if __name__ == "__main__":
    sys.exit(batch_main())
