"""Plate metadata readers: what a microscope wrote beside (or inside) its images.

One function per format turns a raw-image folder into a
:class:`~batchlib.readers.records.PlateMetadata` (image records with well,
field, plane, channel name and pixel size, the fields the plate layout
lists, the channel names by id). :func:`detect_format` says which format a
folder holds; :func:`read_plate_metadata` reads it.
"""

from __future__ import annotations

import os

from ..errors import ConfigError
from .harmony import find_index, read_harmony
from .imagexpress import find_htd, read_imagexpress
from .records import ImageRecord, PlateMetadata

#: Formats with a plate description, and the file-name scheme of their images.
METADATA_FORMATS = {"harmony": "operetta", "imagexpress": "imagexpress"}


def read_plate_metadata(folder: str, format: str) -> PlateMetadata | None:
    """The plate metadata of ``folder`` in ``format``; None for ImageXpress without an HTD (names only).

    Raises
    ------
    ConfigError
        ``harmony`` without an index, or metadata that does not parse (the
        message names the file and the element).
    """
    if format == "harmony":
        return read_harmony(folder)
    if format == "imagexpress":
        return read_imagexpress(folder) if find_htd(folder) else None
    raise ConfigError(f"no plate metadata reader for {format!r}; readers: {', '.join(METADATA_FORMATS)}")


def detect_format(folder: str, names: list[str] | None = None) -> tuple[str, str]:
    """The scheme of a raw folder, and why: a Harmony index, an HTD, else the first name scheme the images match.

    Returns
    -------
    (scheme, reason)
        ``scheme`` is ``harmony``, ``imagexpress``, ``operetta`` or ``batchlib``.

    Raises
    ------
    ConfigError
        Nothing in the folder is recognised (the message lists what was tried).
    """
    from ..plate import FILENAME_SCHEMES, compile_scheme

    index = find_index(folder)
    if index:
        return "harmony", f"Harmony index {os.path.basename(index)}"
    htd = find_htd(folder)
    if htd:
        return "imagexpress", f"ImageXpress plate description {os.path.basename(htd)}"
    names = sorted(names if names is not None else os.listdir(folder))
    images = [n for n in names if n.lower().endswith((".tif", ".tiff"))][:50]
    for scheme in ("batchlib", "operetta", "imagexpress"):
        regex = compile_scheme(scheme)
        matching = sum(1 for n in images if regex.search(n))
        if images and matching > len(images) // 2:
            return scheme, f"{matching} of the first {len(images)} TIFF names match the {scheme} scheme"
    tried = ", ".join(["a Harmony index", "an .HTD file", *[f"{s} names" for s in FILENAME_SCHEMES if s != "viewer"]])
    raise ConfigError(f"--scheme auto: {folder} has none of {tried}; give --scheme (a name or a regular expression)")


__all__ = [
    "ImageRecord",
    "PlateMetadata",
    "METADATA_FORMATS",
    "detect_format",
    "read_harmony",
    "read_imagexpress",
    "read_plate_metadata",
]
