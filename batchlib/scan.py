"""What is on disk now, read once per run: folder listings, file stamps, key stamps in containers.

The planner (:mod:`batchlib.planning`) decides from these; nothing here
decides or writes anything.
"""

from __future__ import annotations

import fnmatch
import os
import re

from .errors import ContainerError
from .io import read_key_stamps
from .state.ledger import Ledger
from .state.stamps import ref, stat_stamp


def ledger_name(path: str, plate_folder: str) -> str:
    """How the ledger names a file: relative to the plate folder if inside it, else as given.

    Examples
    --------
    >>> ledger_name("/data/P1/a.h5", "/data/P1"), ledger_name("/raw/a.tiff", "/data/P1")
    ('a.h5', '/raw/a.tiff')
    >>> ledger_name("/data/P1/sub/../a.h5", "/data/P1/"), ledger_name("/data/P1/.x/b.h5", "/data/P1")
    ('a.h5', '.x/b.h5')
    """
    prefix = plate_folder.rstrip(os.sep) + os.sep
    rest = path[len(prefix) :]
    plain = rest[:1] not in ("", ".", os.sep) and not rest.endswith(os.sep)
    if plain and path.startswith(prefix) and os.sep + "." not in rest and os.sep * 2 not in rest:
        return rest  # a plain name below the folder, as the scan joins them: what relpath gives, 5x faster
    rel = os.path.relpath(path, plate_folder)
    return path if rel.startswith("..") else rel


_UNKNOWN = object()


class FolderScan:
    """Folder listings and file stamps of one run, each read at most once.

    Stamps are kept per folder and keyed by file name (the listing's own
    strings, whose hashes Python caches), because looking them up is most of
    the time of a no-op rerun. After a job writes files, :meth:`forget` drops
    what is now outdated.
    """

    def __init__(self, exclude: dict[str, set[str]] | None = None) -> None:
        # Names no job sees this run, by folder (watch mode: raw files still being written).
        self._exclude = {os.path.abspath(folder): set(names) for folder, names in (exclude or {}).items()}
        self._names: dict[str, list[str]] = {}
        self._hidden: dict[str, list[str]] = {}
        self._matches: dict[tuple[str, str], list[str]] = {}
        self._stamps: dict[str, dict[str, str | None]] = {}

    def _list(self, folder: str) -> None:
        try:
            all_names = os.listdir(folder)
        except FileNotFoundError:
            all_names = []
        left_out = self._exclude.get(os.path.abspath(folder), ())
        self._names[folder] = [n for n in all_names if n[0] != "." and n not in left_out]
        self._hidden[folder] = [n for n in all_names if n[0] == "."]

    def names(self, folder: str) -> list[str]:
        """Names of the visible files and folders in ``folder`` (unsorted)."""
        if folder not in self._names:
            self._list(folder)
        return self._names[folder]

    def matching(self, folder: str, pattern: str) -> list[str]:
        """Visible names in ``folder`` that match glob ``pattern`` (unsorted)."""
        key = (folder, pattern)
        if key not in self._matches:
            self._matches[key] = match(self.names(folder), pattern)
        return self._matches[key]

    def hidden_names(self, folder: str) -> list[str]:
        """Names starting with a dot in ``folder`` (temporaries among them)."""
        if folder not in self._hidden:
            self._list(folder)
        return self._hidden[folder]

    def stamps_in(self, folder: str) -> dict[str, str | None]:
        """The stamps known so far in ``folder``, by name (filled by :meth:`stat`)."""
        stamps = self._stamps.get(folder)
        if stamps is None:
            stamps = self._stamps[folder] = {}
        return stamps

    def stat(self, folder: str, name: str) -> str | None:
        """Stat ``folder/name`` and remember its stamp (None if missing)."""
        try:
            stamp = stat_stamp(os.stat(os.path.join(folder, name)))
        except (FileNotFoundError, NotADirectoryError):
            stamp = None
        self.stamps_in(folder)[name] = stamp
        return stamp

    def stamp(self, path: str) -> str | None:
        """Stat stamp of ``path``, or None if it does not exist."""
        folder, name = os.path.split(path)
        stamp = self.stamps_in(folder).get(name, _UNKNOWN)
        return self.stat(folder, name) if stamp is _UNKNOWN else stamp

    def forget(self, paths: list[str] | None = None) -> None:
        """Forget the stamps of ``paths`` (all if None) and every listing."""
        self._names.clear()
        self._hidden.clear()
        self._matches.clear()
        if paths is None:
            self._stamps.clear()
        else:
            for path in paths:
                folder, name = os.path.split(path)
                self._stamps.get(folder, {}).pop(name, None)


def match(names: list[str], pattern: str) -> list[str]:
    """The names that match a glob ``pattern`` (``*``, ``?``, ``[...]``).

    Examples
    --------
    >>> match(["a.tif", "b.h5", "c.tif"], "*.tif")
    ['a.tif', 'c.tif']
    """
    suffix = pattern[1:]
    if pattern.startswith("*") and not any(c in suffix for c in "*?["):
        return [name for name in names if name.endswith(suffix)]  # "*.h5": no regex needed
    regex = re.compile(fnmatch.translate(pattern))
    return [name for name in names if regex.match(name)]


class StampReader:
    """Current stamps of files and of keys in containers, for one job plan.

    A container's key stamps come from the ledger while the container's file
    stamp equals the one the ledger last saw; otherwise the container is
    opened once and what was read is kept in :attr:`observed`.
    """

    def __init__(self, ledger: Ledger, scan: FolderScan, plate_folder: str):
        self.ledger = ledger
        self.scan = scan
        self.plate_folder = plate_folder
        self.observed: dict[str, tuple[str, dict]] = {}

    def ledger_name(self, path: str) -> str:
        """How the ledger names a file: relative to the plate folder if inside."""
        return ledger_name(path, self.plate_folder)

    def key_stamps(self, path: str, keys: tuple[str, ...]) -> dict[str, str | None]:
        """Stamps of ``keys`` in container ``path``; all None if it is missing or unreadable."""
        file_stamp = self.scan.stamp(path)
        if file_stamp is None:
            return dict.fromkeys(keys)
        name = self.ledger_name(path)
        known = self.observed.get(name) or self.ledger.file_state(name)
        if known is not None and known[0] == file_stamp and all(k in known[1] for k in keys):
            return {k: known[1][k] for k in keys}
        try:
            stamps = read_key_stamps(path, keys, file_stamp)
        except ContainerError:
            return dict.fromkeys(keys)
        previous = known[1] if known is not None and known[0] == file_stamp else {}
        self.observed[name] = (file_stamp, {**previous, **{k: v for k, v in stamps.items() if v is not None}})
        return stamps

    def stamps(self, path: str, name: str, keys: tuple[str, ...]) -> dict[str, str | None]:
        """Stamps of file ``path`` (no keys) or of its ``keys``, by reference."""
        if not keys:
            return {ref(name): self.scan.stamp(path)}
        return {ref(name, k): s for k, s in self.key_stamps(path, keys).items()}
