"""Plate metadata readers: what a microscope wrote beside (or inside) its images.

One function per format turns a raw-image folder into a
:class:`~batchlib.readers.records.PlateMetadata` (image records with well,
field, plane, channel name and pixel size, the fields the plate layout
lists, the channel names by id). :func:`detect_format` says which format a
folder holds; :func:`read_plate_metadata` reads it; :func:`group_inputs`
groups a folder's files per site, by the metadata or by their names.
"""

from __future__ import annotations

import os

from ..errors import ConfigError
from .harmony import find_index, read_harmony
from .imagexpress import find_htd, read_imagexpress
from .ome_tiff import ome_files, read_ome_tiff
from .records import ImageRecord, PlateMetadata

#: Formats with a plate description, and the file-name scheme of their images (None: the names say nothing).
METADATA_FORMATS = {"harmony": "operetta", "imagexpress": "imagexpress", "ome-tiff": None}

# Metadata read in this process, by format and the stamps of the files it came from.
_READ: dict[tuple, PlateMetadata | None] = {}


def _metadata_files(folder: str, format: str) -> list[str]:
    if format == "harmony":
        index = find_index(folder)
        return [index] if index else []
    if format == "imagexpress":
        htd = find_htd(folder)
        return [htd] if htd else []
    return [os.path.join(folder, name) for name in ome_files(folder)]


def _stat(path: str) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_mtime_ns, info.st_size


def read_plate_metadata(folder: str, format: str) -> PlateMetadata | None:
    """The plate metadata of ``folder`` in ``format``; None for ImageXpress without an HTD (names only).

    Read once per process while the files it comes from are unchanged (the
    driver reads it to plan and to lay the importer out).

    Raises
    ------
    ConfigError
        ``harmony`` without an index, ``ome-tiff`` without a plate, or
        metadata that does not parse (the message names the file and the
        element).
    """
    if format not in METADATA_FORMATS:
        raise ConfigError(f"no plate metadata reader for {format!r}; readers: {', '.join(METADATA_FORMATS)}")
    sources = _metadata_files(folder, format)
    key = (format, os.path.abspath(folder), *((path, *_stat(path)) for path in sources))
    if key not in _READ:
        if len(_READ) > 16:
            _READ.clear()
        if format == "harmony":
            _READ[key] = read_harmony(folder)
        elif format == "imagexpress":
            _READ[key] = read_imagexpress(folder) if sources else None
        else:
            _READ[key] = read_ome_tiff(folder)
    return _READ[key]


def group_inputs(scheme: str, names, folder: str | None = None) -> dict[str, list[str]]:
    """Raw files grouped per site under the site's container name: by the plate metadata, else by their names.

    ``scheme`` is a metadata format (:data:`METADATA_FORMATS`; its metadata
    is read from ``folder``) or a file-name scheme
    (:func:`batchlib.plate.site_groups`).
    """
    from ..plate import site_groups

    if scheme in METADATA_FORMATS and folder is not None and os.path.isdir(folder):
        plate = read_plate_metadata(folder, scheme)
        if plate is not None:
            return plate.groups(names)
    return site_groups(names, METADATA_FORMATS.get(scheme) or scheme)


def detect_format(folder: str, names: list[str] | None = None) -> tuple[str, str]:
    """The scheme of a raw folder, and why: a Harmony index, an HTD, OME-TIFFs, else the first name scheme that fits.

    Returns
    -------
    (scheme, reason)
        ``scheme`` is ``harmony``, ``imagexpress``, ``ome-tiff``, ``operetta`` or ``batchlib``.

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
    ome = [n for n in names if n.lower().endswith((".ome.tif", ".ome.tiff"))]
    if ome:
        return "ome-tiff", f"{len(ome)} OME-TIFF file(s)"
    images = [n for n in names if n.lower().endswith((".tif", ".tiff"))][:50]
    for scheme in ("batchlib", "operetta", "imagexpress"):
        regex = compile_scheme(scheme)
        matching = sum(1 for n in images if regex.search(n))
        if images and matching > len(images) // 2:
            return scheme, f"{matching} of the first {len(images)} TIFF names match the {scheme} scheme"
    tried = ", ".join(
        ["a Harmony index", "an .HTD file", "OME-TIFFs", *[f"{s} names" for s in FILENAME_SCHEMES if s != "viewer"]]
    )
    raise ConfigError(f"--scheme auto: {folder} has none of {tried}; give --scheme (a name or a regular expression)")


__all__ = [
    "ImageRecord",
    "PlateMetadata",
    "METADATA_FORMATS",
    "detect_format",
    "find_htd",
    "group_inputs",
    "read_harmony",
    "read_imagexpress",
    "read_ome_tiff",
    "read_plate_metadata",
]
