"""The files of a plate's profiles: SQLite backend, single-cell and per-well tables (CSV, Parquet).

Each is written whole (:func:`write_sqlite`, :func:`write_tables`) or, when a
plate only gained images that sort after its others, extended from the
previous export (:func:`append_profiles`): rows appended to the SQLite file
(hard-linked into the new folder, one transaction) and to a copy of the
single-cell CSV, a new part in the single-cell Parquet folder, and the well
medians computed again only for the wells that gained cells. Both give the
same tables.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

import pandas as pd

from .io.threads import thread_map
from .parquet_parts import PART, ParquetTable, parts_to_merge
from .profiles import well_medians

if TYPE_CHECKING:
    import pyarrow as pa

METADATA = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]
COMPARTMENTS = ("Nuclei", "Cells", "Cytoplasm")
_KEYS = ["TableNumber", "ImageNumber", "ObjectNumber"]


def profile_paths(folder: str, plate: str) -> dict[str, str]:
    """Path of each file of the export folder, by what it holds."""
    names = {
        "sqlite": f"{plate}.sqlite",
        "single_csv": f"{plate}_single_cell.csv",
        "single_parquet": f"{plate}_single_cell.parquet",
        "wells_csv": f"{plate}_well_profiles.csv",
        "wells_parquet": f"{plate}_well_profiles.parquet",
    }
    return {what: os.path.join(folder, name) for what, name in names.items()}


def table_number(plate: str) -> int:
    """The ``TableNumber`` of a plate's rows: a stable 63-bit number from its name.

    cytominer-database numbers each ingested image set (a hash of its image
    CSV); here a plate is one set, so the profiles of several plates copied
    into one database keep distinct ``(TableNumber, ImageNumber)`` keys.

    Examples
    --------
    >>> table_number("P1") == table_number("P1") != table_number("P2")
    True
    """
    return int.from_bytes(hashlib.sha256(plate.encode("utf-8")).digest()[:8], "big") >> 1


def sqlite_tables(single_cells: pd.DataFrame, images: pd.DataFrame, plate: str) -> dict[str, pd.DataFrame]:
    """The SQLite backend's tables: ``Image`` and one per compartment with features.

    The layout of CellProfiler's ExportToDatabase as cytominer-database
    ingests it, which pycytominer's ``SingleCells`` reads with its defaults:
    every table keyed by ``TableNumber`` and ``ImageNumber`` (compartments
    also by ``ObjectNumber``), the ``Image`` table alone holding the
    ``Metadata_*`` columns (join it for plate, well and site), and the cytoplasm linked to its cell and nucleus by
    ``Cytoplasm_Parent_Cells`` and ``Cytoplasm_Parent_Nuclei`` (in batchlib a
    cell, its nucleus and its cytoplasm share one object number).
    """
    number = table_number(plate)
    renamed = single_cells.rename(
        columns={"Metadata_ImageNumber": "ImageNumber", "Metadata_ObjectNumber": "ObjectNumber"}
    )
    renamed.insert(0, "TableNumber", number)
    tables = {"Image": pd.concat([pd.DataFrame({"TableNumber": number}, index=images.index), images], axis=1)}
    for compartment in COMPARTMENTS:
        columns = [c for c in renamed.columns if c.startswith(f"{compartment}_")]
        if columns:
            table = renamed[_KEYS + columns]
            if compartment == "Cytoplasm":
                parents = {f"Cytoplasm_Parent_{c}": table["ObjectNumber"] for c in ("Cells", "Nuclei")}
                table = pd.concat([table[_KEYS], pd.DataFrame(parents), table[columns]], axis=1)
            tables[compartment] = table
    return tables


def write_sqlite(path: str, single_cells: pd.DataFrame, images: pd.DataFrame, plate: str) -> None:
    """The SQLite backend: ``Image`` and one table per compartment, with the indexes pycytominer's collate makes."""
    tables = sqlite_tables(single_cells, images, plate)
    with sqlite3.connect(path) as connection:
        for name, table in tables.items():
            table.to_sql(name, connection, index=False)
        connection.execute("CREATE INDEX table_image_idx ON Image (TableNumber, ImageNumber)")
        connection.execute("CREATE INDEX plate_well_image_idx ON Image (Metadata_Plate, Metadata_Well)")
        for compartment in [name for name in tables if name != "Image"]:
            connection.execute(
                f"CREATE INDEX table_image_object_{compartment.lower()}_idx "
                f"ON {compartment} (TableNumber, ImageNumber, ObjectNumber)"
            )
    connection.close()


class _OneTransaction(sqlite3.Connection):
    """A connection whose ``commit`` waits for :meth:`commit_all` (pandas commits after each ``to_sql``)."""

    def commit(self) -> None:
        pass

    def commit_all(self) -> None:
        super().commit()


def append_sqlite(path: str, single_cells: pd.DataFrame, images: pd.DataFrame, plate: str) -> None:
    """Add the rows of new images to the tables of the SQLite backend at ``path``, in one transaction.

    A reader (or the file after a crash) sees every table with the new rows or none with them.
    """
    connection = sqlite3.connect(path, factory=_OneTransaction)
    try:
        for name, table in sqlite_tables(single_cells, images, plate).items():
            table.to_sql(name, connection, index=False, if_exists="append")
        connection.commit_all()
    except BaseException:
        connection.rollback()
        raise
    finally:
        connection.close()


def write_csv(table: pd.DataFrame, path: str, append: bool = False) -> None:
    """Write ``table`` as CSV through Arrow (about 10x faster than pandas' writer).

    A plain header line, fields quoted only where needed, numbers as the
    shortest text that reads back to the same value (a whole-valued float
    as ``916``), missing values empty. ``append=True`` adds the rows, without
    a header, to the end of an existing file: the text is what writing the
    whole table at once gives.
    """
    import csv
    import io

    import pyarrow as pa
    import pyarrow.csv as pa_csv

    options = pa_csv.WriteOptions(include_header=False, quoting_style="needed")
    with open(path, "ab" if append else "wb") as f:
        if not append:
            header = io.StringIO()
            csv.writer(header, lineterminator="\n").writerow(table.columns)
            f.write(header.getvalue().encode("utf-8"))
        pa_csv.write_csv(pa.Table.from_pandas(table, preserve_index=False), f, options)


def write_tables(folder: str, plate: str, single_cells: pd.DataFrame, annotate_wells: Callable | None = None) -> None:
    """Single-cell and per-well (median) profiles as CSV and Parquet in ``folder``.

    The single-cell Parquet is a folder holding one part (:mod:`batchlib.parquet_parts`).
    ``annotate_wells(wells)`` adds columns to the well profiles (the plate map's).
    """
    paths = profile_paths(folder, plate)
    write_csv(single_cells, paths["single_csv"])
    os.makedirs(paths["single_parquet"])  # a folder of parts (batchlib.parquet_parts): appends add parts
    write_parquet(single_cells, os.path.join(paths["single_parquet"], PART.format(0)))
    wells = well_medians(paths["single_parquet"])
    write_well_profiles(paths, annotate_wells(wells) if annotate_wells else wells)


def write_parquet(table: pd.DataFrame | pa.Table, path: str) -> None:
    """Write a profile table as Parquet, dictionary-encoding only its text columns.

    Parquet's default tries a dictionary for every column; on measured
    features (floats, nearly all distinct) that attempt costs several times
    the write and makes a larger file (numbers in BENCHMARKS.md).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    text = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    pq.write_table(table, path, use_dictionary=text)


def write_well_profiles(paths: dict[str, str], wells: pd.DataFrame) -> None:
    write_csv(wells, paths["wells_csv"])
    write_parquet(wells, paths["wells_parquet"])


#: A file in the previous export folder while :func:`append_profiles` extends it (its SQLite file then may hold
#: rows the other files lack until the new folder replaces it); an export holding it is written whole.
APPENDING = ".batchlib-appending"


def append_profiles(
    previous: str,
    folder: str,
    plate: str,
    single_cells: pd.DataFrame,
    images: pd.DataFrame,
    touched_cells: pd.DataFrame,
    annotate_wells: Callable | None = None,
) -> None:
    """Write ``folder`` as the export ``previous`` plus the rows of new images.

    The new images must sort after every image of ``previous`` (their
    ``ImageNumber`` continue its numbering) and give the same columns. The
    caller renames ``folder`` over ``previous`` afterwards. What is written
    follows the new rows, not the plate, but for the CSV copy:

    - the SQLite file is not copied: ``folder`` gets a hard link to it (a
      copy where the file system has none), and the rows go into it in one
      transaction through ``previous`` (so its rollback journal stays beside
      the file a crash leaves in place);
    - the single-cell CSV is a copy with the rows appended;
    - the single-cell Parquet folder gets hard links to the previous parts
      and the new rows as a new part, merged with the newest parts where
      :func:`~batchlib.parquet_parts.parts_to_merge` says;
    - the well profiles get the medians of the wells that gained cells
      computed again, from ``touched_cells`` (every single-cell row of those
      wells, old and new).

    ``previous`` holds :data:`APPENDING` from before the SQLite transaction on.

    Parameters
    ----------
    previous : str
        The previous export folder (only its SQLite file changes, gaining the rows).
    folder : str
        The new export folder (created).
    single_cells, images : DataFrame
        The single-cell profiles and ``Image`` table rows of the new images.
    touched_cells : DataFrame
        The single-cell profiles of the wells the new images are in.
    annotate_wells : callable, optional
        As for :func:`write_tables`.
    """
    import pyarrow as pa

    from .profiles import well_median_table

    old, new = profile_paths(previous, plate), profile_paths(folder, plate)
    os.makedirs(folder)
    with open(os.path.join(previous, APPENDING), "w"):
        pass

    def extend_sqlite() -> None:
        linked = _link_or_copy(old["sqlite"], new["sqlite"])  # a copy is extended on its own
        append_sqlite(old["sqlite"] if linked else new["sqlite"], single_cells, images, plate)

    def extend_csv() -> None:
        shutil.copyfile(old["single_csv"], new["single_csv"])
        write_csv(single_cells, new["single_csv"], append=True)

    def extend_parquet() -> None:
        parts, target = ParquetTable(old["single_parquet"]), new["single_parquet"]
        added = pa.Table.from_pandas(single_cells, preserve_index=False).cast(parts.schema_arrow)
        rows = [file.metadata.num_rows for file in parts.files]
        kept = len(rows) - (parts_to_merge([*rows, added.num_rows]) - 1)  # the others merge with the new rows
        os.makedirs(target)
        for path in parts.paths[:kept]:
            _link_or_copy(path, os.path.join(target, os.path.basename(path)))
        part = pa.concat_tables([*(file.read() for file in parts.files[kept:]), added])
        write_parquet(part, os.path.join(target, PART.format(kept)))

    # Three independent parts in three threads: copying, SQLite and Arrow release the GIL.
    thread_map(lambda extend: extend(), [extend_sqlite, extend_csv, extend_parquet], threads=3)
    touched = sorted(set(single_cells["Metadata_Well"]))
    fresh = well_median_table(pa.Table.from_pandas(touched_cells, preserve_index=False)).to_pandas()
    fresh = annotate_wells(fresh) if annotate_wells else fresh
    wells = pd.read_parquet(old["wells_parquet"])
    wells = pd.concat([wells[~wells["Metadata_Well"].isin(touched)], fresh], ignore_index=True)
    wells = wells.sort_values(["Metadata_Plate", "Metadata_Well"], kind="stable").reset_index(drop=True)
    write_well_profiles(new, wells)


def _link_or_copy(source: str, target: str) -> bool:
    """Hard-link ``source`` as ``target`` (True), or copy it where the file system has no hard links (False)."""
    try:
        os.link(source, target)
        return True
    except OSError:
        shutil.copyfile(source, target)
        return False
