"""What a plate job keeps between the runs of a watcher, so that a run costs what changed.

A watcher (:mod:`batchlib.watch`) runs the plate-level jobs again and again
in one process, with the same job objects. Two caches live in those objects:

- :class:`CellCache`: each container's cells as read, read again only when
  the container's file changed;
- :class:`GroupRows`: a table with one row per group (an image, a well),
  whose rows are computed again only for the groups whose inputs changed.

Both give what computing everything from scratch gives; a job object that
was just made (a new process, a batch run) simply starts with empty caches.
The plate jobs of one process that read the same plate's cell tables
(aggregate, export) share one :class:`CellCache` (:func:`plate_cell_cache`):
each container is read once for both.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Hashable

import pandas as pd


class CellCache:
    """Each image's cells as :func:`image_cells` read them, read again only from containers whose file changed.

    The result is the same as reading every container: the tables are kept
    exactly as read. ``stamps`` holds the stat stamp of every path of the
    last :meth:`get` (what the cached value was read from).
    """

    def __init__(self) -> None:
        self._entries: dict[tuple, tuple[str | None, tuple]] = {}
        self.reads = 0  # containers read, for tests and benchmarks
        self.stamps: dict[str, str | None] = {}

    def get(self, fn: Callable, paths: list[str], extra: tuple, map_calls: Callable | None) -> list:
        """``fn(path, *extra)`` for every path, from the cache where the file's stat stamp is unchanged."""
        from ..state.stamps import file_stamp

        stamps = {path: file_stamp(path) for path in paths}
        keys = {path: (fn.__name__, path, *map(_hashable, extra)) for path in paths}
        stale = [p for p in paths if stamps[p] is None or self._entries.get(keys[p], (None,))[0] != stamps[p]]
        calls = [(path, *extra) for path in stale]
        values = map_calls(fn, calls) if map_calls else [fn(*call) for call in calls]
        self.reads += len(stale)
        for path, value in zip(stale, values):
            self._entries[keys[path]] = (stamps[path], value)
        wanted, kind = set(keys.values()), (fn.__name__, *map(_hashable, extra))
        for key in [k for k in self._entries if (k[0], *k[2:]) == kind and k not in wanted]:
            del self._entries[key]  # containers gone from the plate (entries read with other arguments stay)
        self.stamps = stamps
        return [self._entries[keys[path]][1] for path in paths]


_SHARED: weakref.WeakValueDictionary[str, CellCache] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


def plate_cell_cache(folder: str) -> CellCache:
    """The :class:`CellCache` of plate folder ``folder``, shared by the job objects of this process that hold it.

    It lives as long as one of them holds it (a watcher's job objects, or
    the jobs of one workflow run); then it is freed. Jobs using it run one
    after another (a process runs one job at a time).

    Examples
    --------
    >>> a = plate_cell_cache("/plates/P1")
    >>> a is plate_cell_cache("/plates/P1/"), a is plate_cell_cache("/plates/P2")
    (True, False)
    """
    key = os.path.realpath(folder)
    with _SHARED_LOCK:
        cache = _SHARED.get(key)
        if cache is None:
            cache = _SHARED[key] = CellCache()
        return cache


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


class GroupRows:
    """A table with one row per group, rows computed again only for groups whose token changed.

    A group's *token* names everything its row is computed from (the stat
    stamps of its containers); the row must depend on nothing else. Then
    :meth:`update` returns exactly what ``compute(all groups)`` returns.

    Examples
    --------
    >>> calls = []
    >>> def squares(groups):
    ...     calls.append(list(groups))
    ...     return pd.DataFrame({"square": [g * g for g in groups]}, index=pd.Index(groups, name="g"))
    >>> rows = GroupRows()
    >>> rows.update({1: "a", 2: "a"}, squares)["square"].tolist()
    [1, 4]
    >>> rows.update({1: "a", 2: "b", 3: "a"}, squares)["square"].tolist(), calls[-1]
    ([1, 4, 9], [2, 3])
    """

    def __init__(self) -> None:
        self._table: pd.DataFrame | None = None
        self._tokens: dict[Hashable, Hashable] = {}
        self.computed = 0  # rows computed, for tests and benchmarks

    def update(self, tokens: dict[Hashable, Hashable], compute: Callable[[list], pd.DataFrame]) -> pd.DataFrame:
        """The rows of the groups of ``tokens``, in its order.

        Parameters
        ----------
        tokens : dict
            Group -> token, in the order of the rows wanted.
        compute : callable
            ``compute(groups)`` gives the rows of ``groups`` (a DataFrame
            indexed by group, one row per group asked for).
        """
        order = list(tokens)
        stale = order if self._table is None else [g for g in order if self._tokens.get(g) != tokens[g]]
        if not stale:
            table = self._table.loc[order]
        elif len(stale) == len(order):
            table = compute(order)
        else:
            fresh = compute(stale)
            changed = set(stale)
            kept = self._table.loc[[g for g in order if g not in changed]]
            if list(fresh.columns) == list(kept.columns) and fresh.dtypes.equals(kept.dtypes):
                table = pd.concat([kept, fresh]).loc[order]
            else:  # other columns than before (a new feature): every row again, as a fresh job would
                stale, table = order, compute(order)
        self.computed += len(stale)
        self._table, self._tokens = table, dict(tokens)
        return table
