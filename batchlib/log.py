"""Logging: the ``Workflow`` logger hierarchy.

Every batchlib logger is ``Workflow`` or a child of it (``Workflow.<Job>``),
so handlers registered on ``Workflow`` see everything. The level comes from
the ``LOGLEVEL`` environment variable (default ``INFO``). Messages go to
stderr (without breaking tqdm progress bars) and, during a run, are appended
to ``<plate>/batchlib/<Workflow>.log``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

ROOT = "Workflow"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TqdmHandler(logging.StreamHandler):
    """Writes records through ``tqdm.write`` so progress bars stay intact."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm  # imported when first needed: light commands start faster

        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


def get_logger(name: str | None = None) -> logging.Logger:
    """The ``Workflow`` logger, or its child ``Workflow.<name>``.

    Examples
    --------
    >>> get_logger("MyJob").name
    'Workflow.MyJob'
    """
    if name is None or name == ROOT:
        return logging.getLogger(ROOT)
    if name.startswith(ROOT + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{ROOT}.{name}")


def level_from_env(default: str = "INFO") -> int:
    """The log level named by ``LOGLEVEL`` (``DEBUG``, ``INFO``, ...)."""
    name = os.environ.get("LOGLEVEL", default).upper()
    level = logging.getLevelName(name)
    return level if isinstance(level, int) else logging.INFO


def configure() -> logging.Logger:
    """Set the ``Workflow`` logger's level from ``LOGLEVEL`` and add a stderr handler once."""
    logger = get_logger()
    logger.setLevel(level_from_env())
    if not any(isinstance(h, TqdmHandler) for h in logger.handlers):
        handler = TqdmHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.propagate = False
    return logger


def add_file_handler(bookkeeping: str | os.PathLike, workflow: str) -> logging.Handler:
    """Append everything logged under ``Workflow`` to ``<bookkeeping>/<workflow>.log``."""
    path = Path(bookkeeping) / f"{workflow}.log"
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FORMAT))
    get_logger().addHandler(handler)
    return handler


def remove_handler(handler: logging.Handler) -> None:
    """Detach and close a handler added by :func:`add_file_handler`."""
    get_logger().removeHandler(handler)
    handler.close()
