"""batchlib: incremental batch image analysis of high-throughput screening plates.

The main entry points::

    from batchlib import BatchJob, BatchJobOnContainer, PlateJob, run_workflow
"""

from ._version import __version__
from .base import BatchJob, BatchJobOnContainer, PlateJob
from .errors import (
    BatchlibError,
    ConfigError,
    ContainerError,
    FolderLockedError,
    InvalidInputError,
    LedgerError,
    OutputError,
)
from .log import get_logger
from .workflow import JobResult, exit_code, run_workflow

__all__ = [
    "BatchJob",
    "BatchJobOnContainer",
    "PlateJob",
    "run_workflow",
    "exit_code",
    "JobResult",
    "get_logger",
    "BatchlibError",
    "ConfigError",
    "ContainerError",
    "FolderLockedError",
    "InvalidInputError",
    "LedgerError",
    "OutputError",
    "__version__",
]
