"""Cell analysis of an HTS plate folder: import, segment, measure, aggregate, export.

    python workflows/cell_analysis_workflow.py -c configs/cell_analysis.conf
    python workflows/cell_analysis_workflow.py -c configs/demo.conf --n-jobs 2 --skip export_omezarr
    python workflows/cell_analysis_workflow.py --help

Every option of the config file can be given on the command line too, which
overrides it. Rerun it as images arrive: only new or changed work is done.
"""

import sys

from batchlib.cell_analysis import cell_analysis_main

if __name__ == "__main__":
    sys.exit(cell_analysis_main())
