"""Logging: the ``Workflow`` logger hierarchy.

Every batchlib logger is ``Workflow`` or a child of it (``Workflow.<Job>``),
so handlers registered on ``Workflow`` see everything. The level comes from
the ``LOGLEVEL`` environment variable (default ``INFO``). Messages go to
stderr (without breaking tqdm progress bars) and, during a run, are appended
to ``<plate>/batchlib/<Workflow>.log``. What TensorFlow and StarDist print
while a model loads is kept out of a normal run (:func:`quiet_tensorflow`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = "Workflow"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TqdmHandler(logging.Handler):
    """Writes records to stderr through ``tqdm.write`` so progress bars stay intact.

    The stream is ``sys.stderr`` when a record is written, not when the
    handler was made: the handler is added once per process, and stderr may
    be redirected later (a notebook, a test's capture).
    """

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm  # imported when first needed: light commands start faster

        try:
            tqdm.write(self.format(record), file=sys.stderr)
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


class RunLogFile(logging.FileHandler):
    """The run's log file, whose failed writes (a full disk) never disturb the run.

    The run itself reports a full disk, in one line; a log line lost on that
    disk is not worth the traceback :mod:`logging` prints by default.
    """

    def handleError(self, record: logging.LogRecord) -> None:
        pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            super().close()


def add_file_handler(bookkeeping: str | os.PathLike, workflow: str) -> logging.Handler:
    """Append everything logged under ``Workflow`` to ``<bookkeeping>/<workflow>.log``."""
    path = Path(bookkeeping) / f"{workflow}.log"
    handler = RunLogFile(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FORMAT))
    get_logger().addHandler(handler)
    return handler


def remove_handler(handler: logging.Handler) -> None:
    """Detach and close a handler added by :func:`add_file_handler`."""
    get_logger().removeHandler(handler)
    handler.close()


#: A line TensorFlow's C++ side prints through absl at INFO level, or absl's note that it logs to stderr.
_TF_CHATTER = re.compile(r"I\d{4} [\d:.]+ +\d+ \S+:\d+\] |WARNING: All log messages before absl::InitializeLog")


class _LinesToLogger(io.TextIOBase):
    """A text stream that logs each line written to it at DEBUG."""

    def __init__(self, logger: logging.Logger):
        self.logger = logger
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            if line.strip():
                self.logger.debug("%s", line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self._pending.strip():
            self.logger.debug("%s", self._pending.rstrip())
        self._pending = ""


@contextlib.contextmanager
def _tensorflow_stderr_to(logger: logging.Logger) -> Iterator[None]:
    """Send what is written to file descriptor 2 meanwhile to a file; afterwards, log TF's lines, replay the rest.

    TensorFlow's C++ code writes to the descriptor itself, so redirecting
    ``sys.stderr`` would not catch it. Anything else written meanwhile (by
    another thread) reaches stderr after the block, in order.
    """
    if sys.stderr is not None:
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to redirect
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            if sys.stderr is not None:
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if _TF_CHATTER.match(line):
                    logger.debug("%s", line.rstrip())
                else:
                    os.write(2, line.encode())


@contextlib.contextmanager
def quiet_tensorflow(name: str = "stardist") -> Iterator[None]:
    """Import TensorFlow and load a model in this block: what they print becomes DEBUG records.

    A normal run shows progress, warnings and the summary, not TensorFlow's
    start-up lines or StarDist's "Loading network weights ...". Meanwhile:

    - What Python code prints to stdout (StarDist) is logged by
      ``Workflow.<name>`` at DEBUG.
    - Unless ``LOGLEVEL`` is ``DEBUG``, ``TF_CPP_MIN_LOG_LEVEL`` defaults to
      1 (TensorFlow's C++ side drops INFO, keeps warnings), and if TensorFlow
      is not imported yet, its import-time lines that this does not silence
      (absl's "All log messages before absl::InitializeLog() ..." and
      "oneDNN custom operations are on", printed before TensorFlow reads the
      variable) are taken from file descriptor 2 and logged by
      ``Workflow.tensorflow`` at DEBUG; anything else written to stderr
      meanwhile is passed on when the block ends.

    With ``LOGLEVEL=DEBUG`` TensorFlow prints as it would without batchlib.
    A ``TF_CPP_MIN_LOG_LEVEL`` set by the user is kept; set to 0 it also
    leaves TensorFlow's INFO lines on stderr.

    Parameters
    ----------
    name : str
        Child of the ``Workflow`` logger that gets the printed lines.
    """
    stdout = _LinesToLogger(get_logger(name))
    with contextlib.ExitStack() as stack:
        if level_from_env() > logging.DEBUG:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
            if "tensorflow" not in sys.modules and os.environ["TF_CPP_MIN_LOG_LEVEL"] != "0":
                stack.enter_context(_tensorflow_stderr_to(get_logger("tensorflow")))
        stack.enter_context(contextlib.redirect_stdout(stdout))
        try:
            yield
        finally:
            stdout.flush()
