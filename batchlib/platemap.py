"""Plate maps: which treatment, dose and control is in each well of a plate.

The layout is the image-based profiling handbook's, which pycytominer's
``annotate`` reads: a plate map is a tab- (or comma-) separated text file
with one row per well, a ``well_position`` column (``A01``) and any
metadata columns (``broad_sample``, ``pert_type``, ``control_type``, ...);
a batch's ``barcode_platemap.csv`` maps each plate (``Assay_Plate_Barcode``,
the plate folder's name here) to its plate map (``Plate_Map_Name``), found
as ``platemap/<Plate_Map_Name>.txt`` beside it.

As pycytominer's ``load_platemap`` does, every column gets the prefix
``Metadata_`` (unless it has one); ``well_position`` becomes
``Metadata_Well`` in batchlib's well names, the key joined on.
"""

from __future__ import annotations

import hashlib
import os
import warnings

import pandas as pd

from .errors import ConfigError
from .plate import parse_well

#: Columns of a batch's barcode -> plate map file.
BARCODE_COLUMNS = ("Assay_Plate_Barcode", "Plate_Map_Name")


def _separator(path: str) -> str:
    with open(path, encoding="utf-8-sig") as f:
        header = f.readline()
    return "\t" if "\t" in header else ","


def read_platemap(path: str) -> pd.DataFrame:
    """Read a plate map: ``Metadata_Well`` (batchlib's well names) and ``Metadata_<column>`` per column.

    Parameters
    ----------
    path : str
        A plate map file (TSV or CSV) with a ``well_position`` column.

    Returns
    -------
    DataFrame
        One row per well, in the file's order; values typed as pandas reads them.

    Raises
    ------
    ConfigError
        If the file does not read, has no ``well_position``, names a well
        that cannot be parsed, or lists a well twice; the message names the file.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "map.txt")
    >>> _ = open(path, "w").write("well_position\\tpert_type\\nA1\\tcontrol\\nB02\\ttrt\\n")
    >>> read_platemap(path).values.tolist()
    [['A01', 'control'], ['B02', 'trt']]
    >>> list(read_platemap(path).columns)
    ['Metadata_Well', 'Metadata_pert_type']
    """
    try:
        table = pd.read_csv(path, sep=_separator(path), encoding="utf-8-sig")
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise ConfigError(f"plate map {path}: cannot read it ({err}); expected a TSV or CSV file") from err
    if "well_position" not in table.columns:
        found = ", ".join(map(str, table.columns[:6]))
        raise ConfigError(f"plate map {path}: no 'well_position' column (found: {found}); add one with wells like A01")
    try:
        wells = [parse_well(str(name)).name for name in table["well_position"]]
    except ConfigError as err:
        raise ConfigError(f"plate map {path}: {err}") from None
    repeated = sorted({w for w in wells if wells.count(w) > 1})
    if repeated:
        raise ConfigError(f"plate map {path}: wells listed more than once: {', '.join(repeated)}")
    table = table.drop(columns="well_position")
    table.columns = [c if str(c).startswith("Metadata_") else f"Metadata_{c}" for c in table.columns]
    if "Metadata_Well" in table.columns:
        raise ConfigError(f"plate map {path}: a column 'Well' or 'Metadata_Well' besides well_position is ambiguous")
    table.insert(0, "Metadata_Well", wells)
    return table.reset_index(drop=True)


def platemap_for(path: str, plate: str) -> str:
    """The plate map file of ``plate``: ``path`` itself, or what a barcode_platemap.csv names for it.

    Raises
    ------
    ConfigError
        If ``path`` is a barcode file that does not list ``plate``, or the plate map it names is missing.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"--platemap {path}: no such file")
    barcodes = pd.read_csv(path, sep=_separator(path), dtype=str, encoding="utf-8-sig")
    if not set(BARCODE_COLUMNS) <= set(barcodes.columns):
        return path  # a plate map itself
    rows = barcodes[barcodes["Assay_Plate_Barcode"] == plate]
    if rows.empty:
        raise ConfigError(
            f"barcode plate map {path} has no row for plate {plate!r} (Assay_Plate_Barcode); "
            f"it lists {', '.join(barcodes['Assay_Plate_Barcode'].head(5))}"
        )
    name = rows["Plate_Map_Name"].iloc[0]
    folder = os.path.join(os.path.dirname(os.path.abspath(path)), "platemap")
    for candidate in (f"{name}.txt", f"{name}.csv", f"{name}.tsv"):
        if os.path.isfile(os.path.join(folder, candidate)):
            return os.path.join(folder, candidate)
    raise ConfigError(f"barcode plate map {path} maps {plate!r} to {name!r}, but {folder}/{name}.txt does not exist")


def file_digest(path: str) -> str:
    """SHA-256 of a file's bytes: a plate map's content as a job parameter (an edit reruns the tables)."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def annotate(
    table: pd.DataFrame, platemap: pd.DataFrame, well_column: str, after: str, source: str | None = None
) -> pd.DataFrame:
    """``table`` with the plate map's columns after column ``after``, joined on the well.

    Every row of ``table`` is kept (a well missing from the map gets empty
    values). With ``source`` (the plate map's file), wells imaged but not in
    the map, and map rows of wells never imaged, are reported as warnings
    naming it (they reach the job's status).

    Examples
    --------
    >>> platemap = pd.DataFrame({"Metadata_Well": ["A01"], "Metadata_pert_type": ["control"]})
    >>> table = pd.DataFrame({"well": ["A01", "A02"], "n": [5, 6]})
    >>> annotate(table, platemap, "well", after="well").values.tolist()
    [['A01', 'control', 5], ['A02', nan, 6]]
    """
    if source is not None:
        imaged, mapped = set(table[well_column]), set(platemap["Metadata_Well"])
        if imaged - mapped:
            missing = ", ".join(sorted(imaged - mapped))
            warnings.warn(f"plate map {source}: wells imaged but not in the map: {missing}", stacklevel=2)
        if mapped - imaged:
            unused = ", ".join(sorted(mapped - imaged))
            warnings.warn(f"plate map {source}: wells in the map never imaged: {unused}", stacklevel=2)
    columns = [c for c in platemap.columns if c != "Metadata_Well" and c not in table.columns]
    values = platemap.set_index("Metadata_Well")[columns].reindex(table[well_column].to_numpy())
    position = table.columns.get_loc(after) + 1
    return pd.concat(
        [table.iloc[:, :position], values.reset_index(drop=True).set_axis(table.index), table.iloc[:, position:]],
        axis=1,
    )


class PlateMapOption:
    """What a plate job with a ``platemap`` option needs: the plate's map file, its digest, its table.

    The job sets ``self.platemap`` (a plate map, a barcode_platemap.csv, or
    None), calls :meth:`resolve_platemap` with the plate folder when it is
    laid out (in the driver), and adds :meth:`platemap_parameters` to its
    parameters, so that an edited plate map reruns it.
    """

    platemap: str | None = None
    _platemap_file: str | None = None

    def resolve_platemap(self, folder: str | os.PathLike) -> None:
        plate = os.path.basename(os.path.abspath(folder))
        self._platemap_file = platemap_for(self.platemap, plate) if self.platemap else None

    def platemap_parameters(self) -> dict:
        if self._platemap_file is None:
            return {}
        name, digest = os.path.basename(self._platemap_file), file_digest(self._platemap_file)
        return {"platemap_file": name, "platemap_sha256": digest}

    def platemap_table(self) -> pd.DataFrame | None:
        return read_platemap(self._platemap_file) if self._platemap_file else None
