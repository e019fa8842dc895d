"""ImageXpress (Molecular Devices MetaXpress): the ``.HTD`` plate description and the image file names.

What this reader relies on (MetaXpress writes it; Bio-Formats' MetamorphReader
reads the same lines):

- the ``.HTD`` file is text, one ``"Key", value, value, ...`` line each,
  comma-separated with double-quoted strings, ending with ``"EndFile"``;
- ``"XWells"`` / ``"YWells"``: plate columns and rows; ``"WellsSelection<r>"``
  (r = 1..YWells): ``TRUE``/``FALSE`` per column, which wells were imaged;
- ``"Sites"`` (``TRUE`` if several fields per well), ``"XSites"``,
  ``"YSites"``, ``"SiteSelection<r>"``: which positions of the site grid
  were imaged; sites are numbered 1.. over the selected positions, row by row;
- ``"Waves"`` (``TRUE`` if several wavelengths), ``"NWavelengths"``,
  ``"WaveName<n>"`` (the channel name), ``"WaveCollect<n>"`` (1 if collected);
- image files ``<prefix>_<well>[_s<site>][_w<n>]<uuid>.tif`` (``_s`` only
  with ``Sites``, ``_w`` only with ``Waves``), thumbnails with ``_thumb``;
  ``<prefix>`` is the HTD's file name without extension;
- the pixel size is not in the HTD but in each TIFF's MetaMorph description:
  ``<prop id="spatial-calibration-x" type="float" value="0.65"/>`` (with
  ``spatial-calibration-units`` ``um``).
"""

from __future__ import annotations

import csv
import os
import re

from ..errors import ConfigError
from ..plate import Well, compile_scheme
from .records import ImageRecord, PlateMetadata


def find_htd(folder: str) -> str | None:
    """The plate's ``.HTD`` file in ``folder`` (None if none; the first by name if several)."""
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(".htd"))
    return os.path.join(folder, names[0]) if names else None


def parse_htd(path: str) -> dict[str, list[str]]:
    """The lines of an HTD file as ``{key: [values]}`` (strings, quotes removed)."""
    entries: dict[str, list[str]] = {}
    with open(path, encoding="latin-1", newline="") as f:  # MetaXpress writes Windows-1252 / Latin-1
        for row in csv.reader(f, skipinitialspace=True):
            if not row or not row[0].strip():
                continue
            key = row[0].strip()
            if key == "EndFile":
                break
            entries[key] = [v.strip() for v in row[1:]]
    if "XWells" not in entries or "YWells" not in entries:
        raise ConfigError(f'{path} is not an ImageXpress plate description: it has no "XWells" / "YWells" lines')
    return entries


def _flag(value: list[str] | None) -> bool:
    return bool(value) and value[0].upper() == "TRUE"


def _int(entries: dict[str, list[str]], key: str, path: str, default: int | None = None) -> int:
    value = entries.get(key)
    if not value:
        if default is None:
            raise ConfigError(f'{path}: the line "{key}" is missing')
        return default
    try:
        return int(value[0])
    except ValueError as err:
        raise ConfigError(f'{path}: "{key}" should be a number, found {value[0]!r}') from err


def _selection(entries: dict[str, list[str]], key: str, rows: int, columns: int, path: str) -> list[tuple[int, int]]:
    """(row, column) positions marked TRUE in the ``<key><r>`` lines (all, if the lines are absent)."""
    if f"{key}1" not in entries:
        return [(r, c) for r in range(rows) for c in range(columns)]
    chosen = []
    for r in range(rows):
        values = entries.get(f"{key}{r + 1}", [])
        if len(values) != columns:
            raise ConfigError(f'{path}: "{key}{r + 1}" should list {columns} TRUE/FALSE values, found {len(values)}')
        chosen += [(r, c) for c, v in enumerate(values) if v.upper() == "TRUE"]
    return chosen


def read_imagexpress(folder: str, htd: str | None = None) -> PlateMetadata:
    """The plate described by the ``.HTD`` in ``folder``: wells, sites, wavelength names, expected files.

    Parameters
    ----------
    folder : str
        The folder with the HTD and the images.
    htd : str, optional
        The HTD file (default: :func:`find_htd`).

    Returns
    -------
    PlateMetadata
        ``images`` holds one record per expected file: the files on disk
        that match the HTD's names, and for fields without files the names
        are unknown (MetaXpress adds a random id), so those fields are in
        ``fields`` only.
    """
    htd = htd or find_htd(folder)
    if htd is None:
        raise ConfigError(f"no .HTD plate description in {folder}")
    entries = parse_htd(htd)
    columns, rows = _int(entries, "XWells", htd), _int(entries, "YWells", htd)
    wells = [Well(r, c).name for r, c in _selection(entries, "WellsSelection", rows, columns, htd)]
    if _flag(entries.get("Sites")):
        x_sites, y_sites = _int(entries, "XSites", htd, 1), _int(entries, "YSites", htd, 1)
        n_sites = len(_selection(entries, "SiteSelection", y_sites, x_sites, htd))
    else:
        n_sites = 1
    channels: dict[str, str] = {}
    if _flag(entries.get("Waves")):
        for n in range(1, _int(entries, "NWavelengths", htd) + 1):
            if entries.get(f"WaveCollect{n}", ["1"])[0] in ("1", "TRUE"):
                name = (entries.get(f"WaveName{n}") or [str(n)])[0]
                channels[str(n)] = name or str(n)
    else:
        channels["1"] = (entries.get("WaveName1") or ["1"])[0] or "1"
    prefix = os.path.splitext(os.path.basename(htd))[0]
    metadata = PlateMetadata("imagexpress", htd, channels=channels, plate=prefix)
    metadata.fields = {(well, site) for well in wells for site in range(1, n_sites + 1)}
    regex = compile_scheme("imagexpress")
    pixel_size = None
    for name in sorted(os.listdir(folder)):
        match = regex.search(name)
        if not match or match["plate"] != prefix:
            continue  # not an image of this plate (another plate's, a thumbnail)
        channel_id = match["channel"] or "1"
        if channel_id not in channels:
            continue  # a wavelength the HTD does not collect: not part of the plate
        if pixel_size is None:
            pixel_size = metamorph_pixel_size(os.path.join(folder, name))
        site = int(match["site"]) if match["site"] else 1
        metadata.images.append(
            ImageRecord(name, match["well"].upper(), site, channels[channel_id], channel_id, pixel_size_um=pixel_size)
        )
    return metadata


_CALIBRATION = re.compile(r'id="spatial-calibration-x"\s+type="float"\s+value="([0-9.eE+-]+)"')
_UNITS = re.compile(r'id="spatial-calibration-units"\s+type="string"\s+value="([^"]*)"')


def metamorph_pixel_size(path: str) -> float | None:
    """Micrometres per pixel from a MetaXpress TIFF's description (None if it has none, or not in um)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            description = tif.pages[0].description or ""
    except Exception:  # the file's own validation reports an unreadable TIFF
        return None
    value, units = _CALIBRATION.search(description), _UNITS.search(description)
    if value is None or (units is not None and units.group(1).lower() not in ("um", "µm", "micron", "microns")):
        return None
    size = float(value.group(1))
    return size if size > 0 else None
