"""Reading and writing the producer stamps of keys inside containers."""

from __future__ import annotations

import os
from collections.abc import Iterable

from ..state.stamps import STAMP_ATTR, unstamped
from .containers import open_file


def read_key_stamps(path: str | os.PathLike, keys: Iterable[str], file_stamp: str) -> dict[str, str | None]:
    """Stamps of ``keys`` in container ``path``; None for a missing key.

    A key without a stamp (written outside batchlib) gets one derived from
    ``file_stamp``, the container file's stat stamp.

    Raises
    ------
    ContainerError
        If the container cannot be opened.
    """
    stamps: dict[str, str | None] = {}
    with open_file(path, "r") as f:
        for key in keys:
            if key not in f:
                stamps[key] = None
                continue
            stamp = f[key].attrs.get(STAMP_ATTR)
            if isinstance(stamp, bytes):
                stamp = stamp.decode()
            stamps[key] = str(stamp) if stamp is not None else unstamped(file_stamp)
    return stamps


def write_key_stamps(f, stamps: dict[str, str]) -> None:
    """Write each key's stamp as an attribute in the open container ``f``."""
    for key, stamp in stamps.items():
        f[key].attrs[STAMP_ATTR] = stamp
