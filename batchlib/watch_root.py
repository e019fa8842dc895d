"""Watch a root folder of plates: each sub-folder is a plate, watched by its own process.

``--plates-root RAW_ROOT --folder OUT_ROOT`` on a workflow script runs the
same script once per plate folder with ``--watch`` (:mod:`batchlib.watch`),
a bounded number at once; a plate folder that appears later starts when a
slot is free; Ctrl-C and SIGTERM are passed on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence

from .log import get_logger
from .watch import install_stop_handlers, restore_handlers


def child_argv(argv: Sequence[str], drop: Sequence[str]) -> list[str]:
    """``argv`` without the options ``drop`` (``--opt value`` or ``--opt=value``).

    Examples
    --------
    >>> argv = ["-c", "a.conf", "--folder", "out", "--plates-root=raw", "--n-jobs", "2"]
    >>> child_argv(argv, ["--folder", "--plates-root"])
    ['-c', 'a.conf', '--n-jobs', '2']
    """
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in drop:
            skip = "=" not in arg
            continue
        kept.append(arg)
    return kept


def watch_plates_root(
    raw_root: str,
    out_root: str,
    command: Sequence[str],
    max_plates: int = 2,
    poll: float = 2.0,
    until_idle: float | None = None,
) -> int:
    """Watch a root folder of plates: each sub-folder is a plate, watched by its own process, a bounded number at once.

    ``command`` is the workflow script's command line without ``--folder``
    and ``--input-folder``; each plate's process gets ``--folder
    <out_root>/<plate> --input-folder <raw_root>/<plate> --watch`` (its own
    lock, log and status). A plate folder that appears later is started when
    a slot is free. Ctrl-C / SIGTERM are passed on to the running plates,
    which stop after their batch. With ``until_idle`` the plates complete by
    it and this returns once none runs, none waits and no new plate folder
    appeared for ``until_idle`` seconds; otherwise it watches until stopped.

    Returns
    -------
    int
        0, or the first non-zero exit code of a plate's process.
    """
    logger = get_logger("Workflow.watch")
    stop, wake = threading.Event(), threading.Event()
    handlers = install_stop_handlers(stop, wake)
    started: set[str] = set()
    running: dict[str, subprocess.Popen] = {}
    code, last_new = 0, time.monotonic()
    try:
        while True:
            try:
                plates = sorted(e.name for e in os.scandir(raw_root) if e.is_dir() and e.name[0] != ".")
            except FileNotFoundError:
                plates = []
            waiting = [p for p in plates if p not in started]
            if waiting:
                last_new = time.monotonic()
            while waiting and len(running) < max_plates and not stop.is_set():
                plate = waiting.pop(0)
                argv = [*command, "--folder", os.path.join(out_root, plate)]
                argv += ["--input-folder", os.path.join(raw_root, plate), "--watch"]
                logger.info("plate %s: watching (%d running)", plate, len(running) + 1)
                running[plate], started = subprocess.Popen(argv), started | {plate}
            for plate, process in list(running.items()):
                if process.poll() is not None:
                    logger.info("plate %s: done (exit %d)", plate, process.returncode)
                    code = code or process.returncode
                    del running[plate]
            if stop.is_set():
                for process in running.values():
                    process.send_signal(signal.SIGTERM)
                for process in running.values():
                    process.wait()
                return code
            idle = time.monotonic() - last_new
            if until_idle is not None and not running and not waiting and idle >= until_idle:
                return code
            wake.wait(poll)
            wake.clear()
    finally:
        restore_handlers(handlers)
