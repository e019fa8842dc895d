"""The progress bar of a job: files done, and time left from the files finished so far.

tqdm's own estimate divides the time since the start by the files done, so
when the first results arrive, the time to start the workers and load a
model (seconds, for StarDist) counts as if every file took that long. Here
the estimate uses only what happened after the first results came back.
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


def seconds_left(first_done: int, first_time: float, done: int, now: float, total: int) -> float | None:
    """Seconds until ``total`` files are done, at the pace since the first results arrived.

    Parameters
    ----------
    first_done, first_time : int, float
        Files done, and the time, when the first results arrived.
    done, now : int, float
        Files done, and the time, now.
    total : int
        Files to do.

    Returns
    -------
    float or None
        None until results arrived twice (no pace is known yet).

    Examples
    --------
    >>> seconds_left(16, 10.0, 16, 10.0, 64) is None  # only the first batch, which carried the start-up
    True
    >>> seconds_left(16, 10.0, 32, 14.0, 64)  # 16 files in 4 s: 32 more take 8 s
    8.0
    """
    if done <= first_done or now <= first_time:
        return None
    return (total - done) * (now - first_time) / (done - first_done)


class FileProgress:
    """A tqdm bar over the files of a job, with :func:`seconds_left` as its estimate.

    Parameters
    ----------
    total : int
        Files to do.
    name : str
        The job's name (the bar's label).
    enabled : bool
        Draw the bar (on stderr); otherwise count silently.
    """

    def __init__(self, total: int, name: str, enabled: bool = True):
        self.total = total
        self.done = 0
        self._first: tuple[int, float] | None = None
        self._bar = tqdm(
            total=total,
            desc=name,
            unit="file",
            file=sys.stderr,
            disable=not enabled,
            mininterval=0.5,
            leave=False,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
        )

    def update(self, files: int) -> None:
        """Count ``files`` more as done (the results of one call arrived)."""
        now = time.monotonic()
        self.done += files
        if self._first is None:
            self._first = (self.done, now)
        left = seconds_left(*self._first, self.done, now, self.total)
        if left is not None:
            self._bar.set_postfix_str(f"{tqdm.format_interval(left)} left", refresh=False)
        self._bar.update(files)

    def close(self) -> None:
        """Remove the bar."""
        self._bar.close()

    def __enter__(self) -> FileProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
