"""Plate geometry and the names of wells and sites, parsed with regular expressions.

Rows are letters: ``A``-``H`` (96 wells), ``A``-``P`` (384), ``A``-``Z`` then
``AA``-``AF`` (1536). Columns are numbers from 1. A site (field of view) is
named ``<well>-<4-digit index>``, e.g. ``C01-0000``, as the plate viewer does.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .errors import ConfigError

#: Plate formats: number of wells -> (rows, columns).
PLATE_FORMATS = {6: (2, 3), 12: (3, 4), 24: (4, 6), 48: (6, 8), 96: (8, 12), 384: (16, 24), 1536: (32, 48)}

_WELL = re.compile(r"^(?P<row>[A-Z]{1,2})(?P<column>\d{1,3})$")

#: File-name schemes: named groups ``well`` (or ``row`` and ``column``), ``site``, ``channel``, optional ``plate``.
FILENAME_SCHEMES = {
    # WellC01_PointC01_0000_ChannelDAPI,WF_GFP,TRITC_Seq0216.tiff (the plate-viewer scheme)
    "batchlib": r"Well(?P<well>[A-Z]{1,2}\d{2,3})_Point[A-Z]{1,2}\d{2,3}_(?P<site>\d{4})_Channel(?P<channel>.+?)"
    r"_Seq(?P<seq>\d+)",
    # What the plate viewer itself matches in container names: well and site only
    "viewer": r"Well(?P<well>[A-Z]{1,2}\d{2,3})_Point[A-Z]{1,2}\d{2,3}_(?P<site>\d{4})_",
    # Operetta: r01c01f01p01-ch1sk1fk1fl1.tiff
    "operetta": r"r(?P<row>\d{2})c(?P<column>\d{2})f(?P<site>\d{2})p(?P<plane>\d{2})-ch(?P<channel>\d+)"
    r"sk\d+fk\d+fl\d+",
    # ImageXpress: PLATE_A01_s1_w1<uuid>.tif; _s only with several sites, _w with several wavelengths; not thumbnails
    "imagexpress": r"^(?!.*_thumb)(?P<plate>.+)_(?P<well>[A-Z]{1,2}\d{2})(?:_s(?P<site>\d+))?(?:_w(?P<channel>\d+))?"
    r"(?=[^_]*\.(?i:tiff?)$)",
}


#: A file name of each scheme, for error messages.
SCHEME_EXAMPLES = {
    "batchlib": "WellC01_PointC01_0000_ChannelDAPI,WF_GFP,TRITC_Seq0000.tiff",
    "viewer": "WellC01_PointC01_0000_plate.h5",
    "operetta": "r01c01f01p01-ch1sk1fk1fl1.tiff",
    "imagexpress": "PLATE_A01_s1_w1.tif",
}


def describe_scheme(regex: re.Pattern) -> str:
    """The scheme's name and an example file name, or its regular expression.

    Examples
    --------
    >>> describe_scheme(compile_scheme("operetta"))
    'operetta (e.g. r01c01f01p01-ch1sk1fk1fl1.tiff)'
    >>> describe_scheme(compile_scheme("(?P<well>[A-P]..)_(?P<site>.)"))
    "'(?P<well>[A-P]..)_(?P<site>.)'"
    """
    for name, pattern in FILENAME_SCHEMES.items():
        if pattern == regex.pattern:
            return f"{name} (e.g. {SCHEME_EXAMPLES[name]})"
    return repr(regex.pattern)


def plate_of(path: str) -> str:
    """The plate a file in a plate folder belongs to: the folder's name.

    Examples
    --------
    >>> plate_of("/data/screens/P001/WellC01_PointC01_0000.h5")
    'P001'
    """
    return os.path.basename(os.path.dirname(os.path.abspath(path)))


def row_name(index: int) -> str:
    """Letters of the 0-based row ``index``: A..Z, then AA, AB, ...

    Examples
    --------
    >>> row_name(0), row_name(15), row_name(26), row_name(31)
    ('A', 'P', 'AA', 'AF')
    """
    if index < 0:
        raise ValueError(f"row index must be >= 0, got {index}")
    if index < 26:
        return chr(ord("A") + index)
    return row_name(index // 26 - 1) + chr(ord("A") + index % 26)


def row_index(name: str) -> int:
    """Inverse of :func:`row_name`.

    Examples
    --------
    >>> row_index("A"), row_index("P"), row_index("AF")
    (0, 15, 31)
    """
    index = 0
    for letter in name:
        index = index * 26 + (ord(letter) - ord("A") + 1)
    return index - 1


@dataclass(frozen=True, order=True)
class Well:
    """A well: 0-based row and column indices."""

    row: int
    column: int

    @property
    def name(self) -> str:
        """``C01``-style name (two-digit column; three beyond 99)."""
        return f"{row_name(self.row)}{self.column + 1:02d}"

    @property
    def row_name(self) -> str:
        return row_name(self.row)

    @property
    def column_name(self) -> str:
        """The column as NGFF names it: ``"1"``, ``"2"``, ..."""
        return str(self.column + 1)


def parse_well(name: str) -> Well:
    """Parse ``C01``, ``P24``, ``AF48``, ``c1`` into a :class:`Well`.

    Examples
    --------
    >>> parse_well("C01"), parse_well("AF48").name
    (Well(row=2, column=0), 'AF48')
    """
    match = _WELL.match(name.strip().upper())
    if match is None or int(match["column"]) < 1:
        raise ConfigError(f"cannot parse well name {name!r}: expected a row letter (A-Z, AA-AF) and a column number")
    return Well(row_index(match["row"]), int(match["column"]) - 1)


def site_name(well: str | Well, site: int) -> str:
    """The plate-viewer site name: ``C01-0003``.

    Examples
    --------
    >>> site_name("C01", 3)
    'C01-0003'
    """
    well = parse_well(well) if isinstance(well, str) else well
    return f"{well.name}-{int(site):04d}"


def parse_site_name(name: str) -> tuple[Well, int]:
    """Inverse of :func:`site_name`.

    Examples
    --------
    >>> parse_site_name("P24-0012")
    (Well(row=15, column=23), 12)
    """
    well, _, site = name.rpartition("-")
    if not well or not site.isdigit():
        raise ConfigError(f"cannot parse site name {name!r}: expected <well>-<index>, e.g. C01-0000")
    return parse_well(well), int(site)


@dataclass(frozen=True)
class ImageName:
    """What a raw image's file name says: plate, well, site, channel (some may be None)."""

    well: Well
    site: int
    channel: str | None = None
    plate: str | None = None

    @property
    def site_name(self) -> str:
        return site_name(self.well, self.site)


def compile_scheme(scheme: str) -> re.Pattern:
    """A scheme name from :data:`FILENAME_SCHEMES`, or a regular expression of one's own."""
    pattern = FILENAME_SCHEMES.get(scheme, scheme)
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ConfigError(f"filename scheme {scheme!r} is not a valid regular expression: {err}") from err
    groups = set(regex.groupindex)
    if not ({"well"} <= groups or {"row", "column"} <= groups) or "site" not in groups:
        raise ConfigError(
            f"filename scheme {scheme!r} must have named groups (?P<well>...) or (?P<row>...) and (?P<column>...), "
            "and (?P<site>...)"
        )
    return regex


def parse_image_name(file_name: str, scheme: str | re.Pattern = "batchlib") -> ImageName:
    """Parse a raw file name with a scheme.

    Examples
    --------
    >>> parse_image_name("WellC01_PointC01_0003_ChannelDAPI,WF_GFP,TRITC_Seq0216.tiff")
    ImageName(well=Well(row=2, column=0), site=3, channel='DAPI,WF_GFP,TRITC', plate=None)
    >>> parse_image_name("r02c11f03p01-ch2sk1fk1fl1.tiff", "operetta").well.name
    'B11'
    >>> parse_image_name("PLATE1_P24_s2_w1.tif", "imagexpress").plate
    'PLATE1'
    """
    regex = compile_scheme(scheme) if isinstance(scheme, str) else scheme
    match = regex.search(file_name)
    if match is None:
        raise ConfigError(f"file name {file_name!r} does not match the filename scheme {describe_scheme(regex)}")
    groups = match.groupdict()
    if groups.get("well"):
        well = parse_well(groups["well"])
    else:
        well = Well(int(groups["row"]) - 1, int(groups["column"]) - 1)
    site = int(groups["site"]) if groups.get("site") else 1  # ImageXpress leaves out _s1 for one site per well
    return ImageName(well, site, groups.get("channel"), groups.get("plate"))


#: Plate sizes used in screening, tried in order by :func:`plate_format`.
HTS_PLATES = (96, 384, 1536)


def plate_format(wells: list[Well], size: int | None = None) -> tuple[int, int]:
    """(rows, columns) of the plate: of ``size`` wells, else the smallest HTS plate holding ``wells``.

    Examples
    --------
    >>> plate_format([parse_well("C01"), parse_well("H12")])
    (8, 12)
    >>> plate_format([parse_well("P24")])
    (16, 24)
    """
    need_rows = max((w.row for w in wells), default=0) + 1
    need_cols = max((w.column for w in wells), default=0) + 1
    if size is not None:
        if size not in PLATE_FORMATS:
            raise ConfigError(f"plate size must be one of {', '.join(map(str, PLATE_FORMATS))}, got {size}")
        rows, cols = PLATE_FORMATS[size]
        if rows < need_rows or cols < need_cols:
            raise ConfigError(f"a {size}-well plate has no well {Well(need_rows - 1, need_cols - 1).name}")
        return rows, cols
    for candidate in HTS_PLATES:
        rows, cols = PLATE_FORMATS[candidate]
        if rows >= need_rows and cols >= need_cols:
            return rows, cols
    return need_rows, need_cols


def site_container(well: str, site: int, plate: str | None = None) -> str:
    """The container name (without extension) of a site, as the plate viewer names them.

    Examples
    --------
    >>> site_container("B03", 4)
    'WellB03_PointB03_0004_plate'
    """
    return f"Well{well}_Point{well}_{site:04d}_{plate or 'plate'}"


def site_group(name: str, regex: re.Pattern) -> str | None:
    """The output name (without extension) of the site a per-channel raw file belongs to.

    It follows the plate viewer's naming, ``Well<W>_Point<W>_<site>_<plate>``,
    whatever the raw scheme; None if the name does not match the scheme.

    Examples
    --------
    >>> site_group("r02c03f04p01-ch1sk1fk1fl1.tiff", compile_scheme("operetta"))
    'WellB03_PointB03_0004_plate'
    """
    try:
        parsed = parse_image_name(name, regex)
    except ValueError:
        return None
    return site_container(parsed.well.name, parsed.site, parsed.plate)


def site_groups(names, scheme: str) -> dict[str, list[str]]:
    """Raw files of one site (one file per channel) grouped under their site's container name.

    A name that does not match ``scheme`` is a group of its own, under its own
    name. Groups and their members are in name order.

    Examples
    --------
    >>> groups = site_groups(["r01c01f01p01-ch2sk1fk1fl1.tiff", "r01c01f01p01-ch1sk1fk1fl1.tiff", "x.tif"], "operetta")
    >>> for key, members in groups.items():
    ...     print(key, members)
    WellA01_PointA01_0001_plate ['r01c01f01p01-ch1sk1fk1fl1.tiff', 'r01c01f01p01-ch2sk1fk1fl1.tiff']
    x.tif ['x.tif']
    """
    regex = compile_scheme(scheme)
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        groups.setdefault(site_group(name, regex) or name, []).append(name)
    return groups
