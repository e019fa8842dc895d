"""The files of a plate folder that make up a release, and what each one is.

A release is every regular file under the plate folder except the
bookkeeping folder ``batchlib/`` and batchlib's temporary files, optionally
narrowed to some kinds of output and to glob patterns. Symbolic links are
followed only to files inside the plate folder; a link to anything outside
is skipped (and reported), so a release never carries files from elsewhere.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import ConfigError, UnsafePathError
from ..plate import FILENAME_SCHEMES
from ..state import BOOKKEEPING_FOLDER
from ..state.atomic import TMP_PREFIX
from ..state.stamps import stat_stamp
from .location import safe_relpath

#: Prefix of partially downloaded files (kept for resuming).
PART_PREFIX = ".batchlib-part-"

#: Kinds of output a release can include, by the top-level name in the plate folder.
KINDS = ("containers", "plate_table", "profiles", "crops", "qc", "omezarr", "manifest", "other")

_SITE = re.compile(FILENAME_SCHEMES["viewer"])
_HASH_BLOCK = 8 * 2**20


@dataclass(frozen=True)
class LocalFile:
    """A file of the release: its path, its path relative to the plate folder, size and stat stamp."""

    path: str
    rel: str
    size: int
    stamp: str


def file_kind(rel: str) -> str:
    """The kind of output a file belongs to, from its top-level name.

    Examples
    --------
    >>> file_kind("P1.ome.zarr/B/3/0/0/0"), file_kind("A.crops/1_mask.png"), file_kind("P1_table.hdf5")
    ('omezarr', 'crops', 'plate_table')
    >>> file_kind("WellC01_PointC01_0000_Seq0.h5"), file_kind("P1_qc/cell_count.png")
    ('containers', 'qc')
    >>> file_kind("WellC01_PointC01_0000_Seq0.crops.hdf5"), file_kind("P1_crops.parquet")
    ('crops', 'crops')
    """
    top = rel.split("/", 1)[0]
    if top.endswith(".ome.zarr"):
        return "omezarr"
    if top.endswith((".crops", ".crops.hdf5", "_crops.parquet")):
        return "crops"
    if top.endswith("_qc"):
        return "qc"
    if top.endswith("_profiles"):
        return "profiles"
    if top.endswith("_table.hdf5"):
        return "plate_table"
    if top.endswith("_manifest.csv"):
        return "manifest"
    if top.endswith((".h5", ".hdf5", ".n5", ".zarr")):
        return "containers"
    return "other"


def well_and_site(rel: str) -> tuple[str, str]:
    """Well and site of a file, where its name says them (else empty strings).

    Per-image files carry them in their name (the plate-viewer scheme); files
    of an OME-Zarr plate in their path (``row/column/field``).

    Examples
    --------
    >>> well_and_site("WellC01_PointC01_0003_ChannelDAPI_Seq0003.crops/7_mask.png")
    ('C01', '3')
    >>> well_and_site("P1.ome.zarr/C/2/1/0/0/0")
    ('C02', '1')
    >>> well_and_site("P1_table.hdf5")
    ('', '')
    """
    parts = rel.split("/")
    if parts[0].endswith(".ome.zarr") and len(parts) >= 4 and parts[1].isalpha() and parts[2].isdigit():
        field = parts[3] if parts[3].isdigit() else ""
        return f"{parts[1]}{int(parts[2]):02d}", field
    match = _SITE.search(parts[0])
    if match is None:
        return "", ""
    return match["well"], str(int(match["site"]))


def selected(rel: str, patterns: Sequence[str]) -> bool:
    """True if a glob in ``patterns`` matches path ``rel`` or one of its folders.

    Examples
    --------
    >>> selected("P1_qc/count.png", ["P1_qc"]), selected("a.h5", ["*.png"])
    (True, False)
    """
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(p, pattern) for pattern in patterns for p in prefixes)


def release_files(
    folder: str | os.PathLike,
    include: Sequence[str] | None = None,
    kinds: Iterable[str] | None = None,
) -> tuple[list[LocalFile], list[tuple[str, str]]]:
    """List the files of a plate folder that go into a release.

    Parameters
    ----------
    folder : path-like
        The plate folder.
    include : list of str, optional
        Glob patterns over paths relative to the folder (``*.h5``,
        ``P1_qc``, ``*.crops/*_mask.png``); a pattern that matches a folder
        selects everything under it. Default: everything.
    kinds : iterable of str, optional
        Kinds of output to include (see :data:`KINDS`). Default: all.

    Returns
    -------
    files : list of LocalFile
        Sorted by relative path.
    skipped : list of (str, str)
        Relative paths left out, with the reason (links to outside the
        folder, unsafe names).
    """
    root = os.path.abspath(folder)
    real_root = os.path.realpath(root)
    wanted = None if kinds is None else set(kinds)
    if wanted is not None and not wanted <= set(KINDS):
        raise ConfigError(f"unknown kind(s) {sorted(wanted - set(KINDS))}; choose from {', '.join(KINDS)}")
    files: list[LocalFile] = []
    skipped: list[tuple[str, str]] = []
    stack = [("", root)]
    while stack:
        rel_dir, path = stack.pop()
        with os.scandir(path) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith((TMP_PREFIX, PART_PREFIX)) or (not rel_dir and name == BOOKKEEPING_FOLDER):
                    continue
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    if os.path.commonpath([target, real_root]) != real_root:
                        skipped.append((rel, f"symbolic link to {target}, outside the plate folder"))
                        continue
                    if os.path.isdir(target):
                        skipped.append((rel, "symbolic link to a folder (not followed)"))
                        continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append((rel, entry.path))
                    continue
                if not entry.is_file():
                    continue
                try:
                    safe_relpath(rel)
                except UnsafePathError as err:
                    skipped.append((rel, str(err)))
                    continue
                if wanted is not None and file_kind(rel) not in wanted:
                    continue
                if include and not selected(rel, include):
                    continue
                st = entry.stat()
                files.append(LocalFile(entry.path, rel, st.st_size, stat_stamp(st)))
    files.sort(key=lambda f: f.rel)
    return files, skipped


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's content, read in 8 MiB blocks (hashlib releases the GIL)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()
