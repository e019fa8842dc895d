"""batchlib: incremental batch image analysis of high-throughput screening plates.

The main entry points::

    from batchlib import BatchJob, BatchJobOnContainer, PlateJob, run_workflow, run_job
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._version import __version__
from .errors import (
    BatchlibError,
    ConfigError,
    ContainerError,
    FolderLockedError,
    InvalidInputError,
    LedgerError,
    OutputError,
)

# The jobs and the workflow pull in numpy, pandas and the containers; they are
# imported on first use, so light commands (``batchlib upload``, ``status``)
# start quickly.
_LAZY = {
    "BatchJob": "base",
    "BatchJobOnContainer": "base",
    "PlateJob": "base",
    "get_logger": "log",
    "JobResult": "workflow",
    "exit_code": "workflow",
    "run_workflow": "workflow",
    "run_job": "workflow",
    "watch_workflow": "watch",
    "workflow_main": "script",
}

if TYPE_CHECKING:
    from .base import BatchJob, BatchJobOnContainer, PlateJob
    from .log import get_logger
    from .script import workflow_main
    from .watch import watch_workflow
    from .workflow import JobResult, exit_code, run_job, run_workflow


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'batchlib' has no attribute {name!r}")


__all__ = [
    "BatchJob",
    "BatchJobOnContainer",
    "PlateJob",
    "run_workflow",
    "run_job",
    "watch_workflow",
    "workflow_main",
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
