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
