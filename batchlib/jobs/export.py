"""Export per-plate profiles: a SQLite backend, single-cell and per-well tables as CSV and Parquet.

The layout is what the cytominer tools expect: tables ``Image``, ``Nuclei``,
``Cells``, ``Cytoplasm`` keyed by ``TableNumber`` / ``ImageNumber`` /
``ObjectNumber``, the ``Image`` table with ``Metadata_Plate``,
``Metadata_Well``, ``Metadata_Site``; feature columns
``<Compartment>_<Category>_<Feature>[_<Channel>]``. The files are written by
:mod:`batchlib.profile_files`.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from ..base import PlateJob
from ..plate import plate_of
from ..platemap import PlateMapOption, annotate
from ..profile_files import APPENDING, append_profiles, write_sqlite, write_tables
from ..state.stamps import stat_stamp
from .aggregate import cell_table_keys, concat_cells, read_image_cells
from .plate_cache import CellCache, plate_cell_cache

logger = logging.getLogger("Workflow.ExportProfiles")

APPEND, REWRITE = "append", "rewrite"


def single_cell_profiles(cells: pd.DataFrame, plate: str, image_numbers: dict[str, int]) -> pd.DataFrame:
    """One row per cell: metadata columns, then the Nuclei_, Cells_ and Cytoplasm_ features.

    ``image_numbers`` maps each image name to its ``ImageNumber`` (its row in the ``Image`` table).
    """
    sites = cells["image_name"].str.extract(r"_(\d{4})_")[0].astype("Int64")
    profiles = pd.DataFrame(
        {
            "Metadata_Plate": plate,
            "Metadata_Well": cells["well_name"].to_numpy(),
            "Metadata_Site": sites.to_numpy(),
            "Metadata_ImageNumber": cells["image_name"].map(image_numbers).to_numpy(dtype="int64"),
            "Metadata_ObjectNumber": cells["label_id"].to_numpy(),
        }
    )
    features = [c for c in cells.columns if c.startswith(("Nuclei_", "Cells_", "Cytoplasm_"))]
    return pd.concat([profiles, cells[features].reset_index(drop=True)], axis=1)


def image_rows(names: pd.DataFrame, frames: list[pd.DataFrame], plate: str) -> pd.DataFrame:
    """The ``Image`` table: one row per image, ``ImageNumber`` 1.. in the order of ``names``."""
    images = names.assign(ImageNumber=range(1, len(names) + 1), Metadata_Plate=plate)
    images = images.rename(columns={"well_name": "Metadata_Well"})
    images["Metadata_Site"] = images["site_name"].str.rsplit("-", n=1).str[1].astype(int)
    images["n_cells"] = [len(frame) for frame in frames]
    return images


@dataclass(frozen=True)
class Exported:
    """What a run of :class:`ExportProfiles` wrote, kept by the job object for its next run."""

    folder: str  #: the export folder
    files: dict[str, str]  #: stat stamp of each of its files, as written
    images: dict[str, str | None]  #: stat stamp of each image's container, in ImageNumber order
    columns: tuple  #: names and types of the single-cell and Image table columns


def folder_stamps(folder: str) -> dict[str, str]:
    """Stat stamp of every file in ``folder`` and in its sub-folders (``name/file``); empty if it does not exist."""
    if not os.path.isdir(folder):
        return {}
    stamps = {}
    for entry in os.scandir(folder):
        if entry.is_dir():
            stamps.update({f"{entry.name}/{name}": stamp for name, stamp in folder_stamps(entry.path).items()})
        elif entry.is_file():
            stamps[entry.name] = stat_stamp(entry.stat())
    return stamps


def column_types(*tables: pd.DataFrame) -> tuple:
    """The column names and types of ``tables``, to compare."""
    return tuple(tuple((name, str(dtype)) for name, dtype in table.dtypes.items()) for table in tables)


def export_action(
    previous: Exported | None, folder: str, images: dict[str, str | None], on_disk: dict[str, str], columns: tuple
) -> tuple[str, str]:
    """Whether the export can be extended with the new images' rows (``APPEND``) or is written whole (``REWRITE``).

    Appending gives the same tables as writing whole when the export on disk
    is the one this job object wrote, every image of it is still there
    unchanged, the new images sort after all of them (so the ``ImageNumber``
    of the others stay), and the new rows have the same columns.

    Parameters
    ----------
    previous : Exported or None
        What the job object wrote last (None: nothing yet, e.g. a new process).
    folder : str
        The export folder to write.
    images : dict
        Stat stamp of each image's container, in sorted order of the images.
    on_disk : dict
        :func:`folder_stamps` of the export folder now.
    columns : tuple
        :func:`column_types` of the new images' rows.

    Returns
    -------
    (str, str)
        The action and why.

    Examples
    --------
    >>> before = Exported("P1_profiles", {"P1.sqlite": "1:1"}, {"a": "1:1"}, ())
    >>> export_action(before, "P1_profiles", {"a": "1:1", "b": "1:2"}, {"P1.sqlite": "1:1"}, ())
    ('append', '1 new image(s)')
    >>> export_action(before, "P1_profiles", {"0": "1:2", "a": "1:1"}, {"P1.sqlite": "1:1"}, ())[0]
    'rewrite'
    >>> export_action(before, "P1_profiles", {"a": "1:1", "b": "1:2"}, {"P1.sqlite": "1:1", APPENDING: "1:3"}, ())
    ('rewrite', 'an append to the export folder was cut short')
    """
    if previous is None:
        return REWRITE, "no export written by this job object yet"
    if folder != previous.folder:
        return REWRITE, f"its last export was {previous.folder}"
    if APPENDING in on_disk:
        return REWRITE, "an append to the export folder was cut short"
    if on_disk != previous.files:
        return REWRITE, "the export folder is not the one this job object wrote"
    old = list(previous.images)
    if list(images)[: len(old)] != old:
        return REWRITE, "images were removed, or new ones sort before others"
    changed = [name for name in old if images[name] != previous.images[name]]
    if changed:
        return REWRITE, f"{len(changed)} image(s) changed, e.g. {changed[0]}"
    if columns != previous.columns:
        return REWRITE, "the new images have other columns"
    return APPEND, f"{len(images) - len(old)} new image(s)"


class ExportProfiles(PlateMapOption, PlateJob):
    """Write ``<plate>_profiles/``: SQLite backend, single-cell and well profiles (CSV, Parquet).

    The folder is written to a temporary name and renamed, so readers never
    see a half-written export. A job object run again (a watcher's) extends
    its previous export when the plate only gained images that sort after
    the others (acquisition order;
    :func:`batchlib.profile_files.append_profiles`): the new folder is the
    previous one's files plus the new rows (the SQLite file extended where it
    is, not copied), and only the wells that gained cells get their medians
    computed again. Otherwise, or when an append was cut short, it writes
    everything.

    With ``platemap`` (the plate's plate map, or a batch's
    barcode_platemap.csv; :mod:`batchlib.platemap`) its columns
    (``Metadata_<name>``) are added to the ``Image`` table, the single-cell
    profiles (after ``Metadata_Site``) and the well profiles (after
    ``Metadata_Well``), as pycytominer's ``annotate`` would add them.
    """

    parameter_names: ClassVar[tuple[str, ...]] = ("table_keys", "scheme", "platemap")

    def __init__(
        self,
        cell_key: str | None = "cell_segmentation",
        nuclei_key: str = "nucleus_segmentation",
        scheme: str = "batchlib",
        platemap: str | None = None,
        input_pattern: str = "*.h5",
        identifier: str | None = None,
    ):
        self._cache: CellCache | None = None  # the plate's cells as read: plate_cell_cache
        self._exported: Exported | None = None  # what its last run wrote
        self._last_action: str | None = None  # APPEND or REWRITE, for tests and benchmarks
        self.table_keys = cell_table_keys(cell_key, nuclei_key)
        super().__init__(
            input_pattern=input_pattern,
            output_name="{plate}_profiles",
            input_key=self.table_keys,
            identifier=identifier,
        )
        self.scheme = scheme
        self.platemap = os.fspath(platemap) if platemap is not None else None

    def layout(self, folder, input_folder=None, run_kwargs=None):
        """Find the plate's plate map, then lay the job out."""
        self.resolve_platemap(folder)
        return super().layout(folder, input_folder, run_kwargs)

    def parameters(self) -> dict:
        return {**super().parameters(), **self.platemap_parameters()}

    def __getstate__(self) -> dict:
        return {**vars(self), "_cache": None, "_exported": None}

    def run(self, input_files, output_files, **kwargs):
        out = output_files[0]
        plate = plate_of(out)
        folder = os.path.join(os.path.dirname(out), self.output_name.format(plate=plate))
        paths = sorted(input_files)
        self._cache = plate_cell_cache(os.path.dirname(output_files[0]))  # shared with the other plate jobs
        frames, names = read_image_cells(paths, self.table_keys, self.scheme, self.map_parallel, self._cache)
        stamps = dict(zip(names["image_name"].tolist(), (self._cache.stamps[p] for p in paths)))
        images = image_rows(names, frames, plate)
        numbers = dict(zip(images["image_name"].tolist(), images["ImageNumber"].tolist()))
        platemap = self.platemap_table()

        def profiles_of(frames: list[pd.DataFrame]) -> pd.DataFrame:
            profiles = single_cell_profiles(concat_cells(frames), plate, numbers)
            return profiles if platemap is None else annotate(profiles, platemap, "Metadata_Well", "Metadata_Site")

        # A partial of a module function, not a closure: with n_jobs > 1 it goes to a worker process.
        annotate_wells = None if platemap is None else functools.partial(annotate_well_profiles, platemap=platemap)

        if platemap is not None:
            images = annotate(images, platemap, "Metadata_Well", "Metadata_Well", source=self._platemap_file)
        previous, self._exported = self._exported, None  # a run that fails leaves nothing to extend
        is_new = ~names["image_name"].isin(list(previous.images) if previous else []).to_numpy()
        new_frames = [frame for frame, new in zip(frames, is_new) if new] or [frame.iloc[:0] for frame in frames[:1]]
        new_cells = profiles_of(new_frames)
        action, why = export_action(previous, folder, stamps, folder_stamps(folder), column_types(new_cells, images))
        logger.debug("%s %s: %s", action, folder, why)
        self._last_action = action
        if action == APPEND:
            touched = set(new_cells["Metadata_Well"])
            touched_cells = profiles_of([f for f, well in zip(frames, names["well_name"]) if well in touched])
            append_profiles(folder, out, plate, new_cells, images[is_new], touched_cells, annotate_wells)
            columns = column_types(new_cells, images)
        else:
            single = new_cells if is_new.all() else profiles_of(frames)
            columns = column_types(single, images)
            os.makedirs(out)
            # Two independent halves: with n_jobs > 1 two workers write them at the same time.
            halves = [(write_sqlite, os.path.join(out, f"{plate}.sqlite"), single, images, plate)]
            halves.append((write_tables, out, plate, single, annotate_wells))
            self.map_parallel(_call, halves)
        self._exported = Exported(folder, folder_stamps(out), stamps, columns)


def annotate_well_profiles(wells: pd.DataFrame, platemap: pd.DataFrame) -> pd.DataFrame:
    """Well profiles with the plate map's columns after ``Metadata_Well``."""
    return annotate(wells, platemap, "Metadata_Well", "Metadata_Well")


def _call(fn, *args):
    """``fn(*args)``: lets one ``map_parallel`` run two different functions."""
    return fn(*args)
