"""Stamps: short strings that change whenever the thing they describe changes.

A file's stamp is its size and modification time in nanoseconds. A key inside
a container gets a stamp written by the job that produced it (an attribute),
because many jobs write into one container and the file's own mtime changes
with each of them. A *reference* names what a stamp belongs to: ``"name"``
for a whole file, ``"name::key"`` for a key in a container.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterable

#: Attribute under which a producing job stores the stamp of a key it wrote.
STAMP_ATTR = "batchlib_stamp"
#: Separator between file name and key in a reference.
KEY_SEP = "::"


def stat_stamp(st: os.stat_result) -> str:
    """Stamp of a file from its ``os.stat`` result: ``"<size>:<mtime_ns>"``.

    Examples
    --------
    >>> import os, tempfile
    >>> path = tempfile.mktemp()
    >>> _ = open(path, "w").write("abc")
    >>> stat_stamp(os.stat(path)).startswith("3:")
    True
    """
    return f"{st.st_size}:{st.st_mtime_ns}"


def file_stamp(path: str | os.PathLike) -> str | None:
    """:func:`stat_stamp` of the file at ``path``, or None if it cannot be stat'ed (gone, no permission).

    Examples
    --------
    >>> file_stamp("/no/such/file") is None
    True
    """
    try:
        return stat_stamp(os.stat(path))
    except OSError:
        return None


def tree_stamp(folder: str | os.PathLike) -> str:
    """Stamp of a whole folder tree: changes when any file under it is added, removed or changed.

    A folder's own mtime changes only when its direct entries do, not when a
    file deeper down is rewritten; this hashes the relative path and stat
    stamp of every file below (symbolic links not followed).

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(folder, "a", "b"))
    >>> before = tree_stamp(folder)
    >>> _ = open(os.path.join(folder, "a", "b", "c.png"), "w").write("x")
    >>> tree_stamp(folder) != before
    True
    """
    digest = hashlib.blake2b(digest_size=12)
    stack = [(str(folder), "")]
    while stack:
        path, rel = stack.pop()
        with os.scandir(path) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                name = f"{rel}/{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, name))
                else:
                    digest.update(f"{name}\0{stat_stamp(entry.stat(follow_symlinks=False))}\0".encode())
    return "tree:" + digest.hexdigest()


def new_key_stamp(producer: str) -> str:
    """A fresh, unique stamp for a key written by job ``producer``."""
    return f"{producer}:{uuid.uuid4().hex[:16]}"


def unstamped(file_stamp: str) -> str:
    """Stamp of a key that exists but that no batchlib job stamped.

    It is tied to the container file's stamp, so any change of the file
    counts as a change of the key: conservative, never stale.
    """
    return f"unstamped@{file_stamp}"


def ref(name: str, key: str | None = None) -> str:
    """The reference of file ``name`` or of ``key`` inside it.

    Examples
    --------
    >>> ref("a.h5", "raw")
    'a.h5::raw'
    >>> ref("a.tif")
    'a.tif'
    """
    return name if key is None else f"{name}{KEY_SEP}{key}"


def fingerprint(params: str, version: str, inputs: Iterable, outputs: Iterable) -> str:
    """One string that changes when parameters, version or any stamp changes.

    Examples
    --------
    >>> fingerprint("p", "1", ["3:10"], ["s1", None])
    'p|1|3:10|s1|None'
    """
    return "|".join([params, version, *map(str, inputs), *map(str, outputs)])


_UNKNOWN = object()


def split_up_to_date(
    names: list[str],
    fingerprints: dict[str, str],
    params: str,
    version: str,
    input_folder: str,
    output_folder: str,
    output_name: Callable[[str], str],
    output_ext: str | None,
    input_stamps: dict[str, str | None],
    output_stamps: dict[str, str | None],
) -> tuple[list[str], list[str]]:
    """The fast path of plain file jobs (one input, one output file): which ``names`` are up to date.

    A name is up to date when its recorded fingerprint equals
    ``fingerprint(params, version, [stat_stamp(input)], [stat_stamp(output)])``
    of the files as they are (a missing file's stamp is None). This function
    computes exactly that, inlined, because this loop is most of the time of
    a no-op rerun over a large plate (a function call per file costs as much
    as the ``stat``); a test checks it against :func:`fingerprint` and
    :func:`stat_stamp`.

    Parameters
    ----------
    names : list of str
        Input file names.
    fingerprints : dict
        Recorded fingerprints, by input name (no entry: not up to date).
    params, version : str
        The job's parameter hash and version.
    input_folder, output_folder : str
        Where the inputs and the outputs are.
    output_name : callable
        Output file name of an input name.
    output_ext : str or None
        The output extension, for the common case (``stem + output_ext``)
        without calling ``output_name``.
    input_stamps, output_stamps : dict
        Stamps already known, by file name (None: missing); filled in here.

    Returns
    -------
    tuple of list
        The up-to-date names and the others, each in the order of ``names``.
    """
    head = f"{params}|{version}|"
    in_prefix, out_prefix = os.path.join(input_folder, ""), os.path.join(output_folder, "")
    in_get, out_get, known = input_stamps.get, output_stamps.get, fingerprints.get
    os_stat, unknown = os.stat, _UNKNOWN
    up_to_date: list[str] = []
    others: list[str] = []
    for name in names:
        fp = known(name)
        if fp is None:
            others.append(name)
            continue
        a = in_get(name, unknown)
        if a is unknown:
            try:
                st = os_stat(in_prefix + name)
                a = f"{st.st_size}:{st.st_mtime_ns}"  # stat_stamp(st), inlined
            except FileNotFoundError:
                a = None
            input_stamps[name] = a
        dot = name.rfind(".")
        out = name[:dot] + output_ext if output_ext is not None and dot > 0 else output_name(name)
        b = out_get(out, unknown)
        if b is unknown:
            try:
                st = os_stat(out_prefix + out)
                b = f"{st.st_size}:{st.st_mtime_ns}"
            except FileNotFoundError:
                b = None
            output_stamps[out] = b
        if fp == f"{head}{a}|{b}":  # fingerprint(params, version, [a], [b]), inlined
            up_to_date.append(name)
        else:
            others.append(name)
    return up_to_date, others
