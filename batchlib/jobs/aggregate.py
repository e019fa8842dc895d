"""Aggregate cell tables into the plate's image and well tables (``<plate>_table.hdf5``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
import pandas as pd

from ..base import PlateJob
from ..io import open_file, read_table, write_plate_table
from ..io.images import PIXEL_SIZE_ATTR
from ..io.tables import table_key
from ..nucleus_size import DIAMETER_ATTR, SCALE_ATTR
from ..plate import compile_scheme, parse_image_name, site_name
from ..platemap import PlateMapOption, annotate
from .importer import NONFINITE_ATTR
from .plate_cache import CellCache, GroupRows, plate_cell_cache


def image_table(
    cells: pd.DataFrame,
    names: pd.DataFrame,
    features: Sequence[str],
    min_cells: int,
    score_feature: str | None,
    focus_fraction: float = 0.3,
) -> pd.DataFrame:
    """One row per image: n_cells, median and mean of each feature, QC flags, score.

    QC flags: ``too_few_cells`` (fewer than ``min_cells``); when ``names``
    has a ``focus_score``, ``out_of_focus`` (score below ``focus_fraction``
    times the plate's median); when it has a ``nucleus_diameter``,
    ``odd_nucleus_size`` (more than :data:`ODD_SIZE` times larger or smaller
    than the plate's median: another magnification, a wrong channel, or a
    failed estimate); ``is_outlier`` is 1 if any flag is.

    Parameters
    ----------
    cells : DataFrame
        One row per cell with an ``image_name`` column and the features.
    names : DataFrame
        ``image_name``, ``site_name``, ``well_name`` (and optionally ``focus_score``) of every image.
    """
    stats = image_stats(cells, features, list(names["image_name"]))
    return image_table_from_stats(stats, names, min_cells, score_feature, focus_fraction)


def image_stats(cells: pd.DataFrame, features: Sequence[str], images: list[str]) -> pd.DataFrame:
    """``n_cells``, ``median_<feature>`` and ``mean_<feature>`` of each of ``images`` (from its own cells only).

    Indexed by ``image_name`` in the order of ``images``; an image without
    cells has ``n_cells`` 0 and NaN statistics.
    """
    cells = cells.reindex(columns=["image_name", *features])  # a feature some images lack: NaN, as in a concat
    grouped = cells.groupby("image_name", sort=False)[list(features)]
    index = pd.Index(images, name="image_name")
    n_cells = cells.groupby("image_name", sort=False).size().reindex(index).fillna(0).astype(np.int64)
    table = pd.DataFrame({"n_cells": n_cells}, index=index)
    return table.join(grouped.median().add_prefix("median_")).join(grouped.mean().add_prefix("mean_"))


def image_table_from_stats(
    stats: pd.DataFrame,
    names: pd.DataFrame,
    min_cells: int,
    score_feature: str | None,
    focus_fraction: float = 0.3,
) -> pd.DataFrame:
    """:func:`image_table` from each image's :func:`image_stats` (the QC flags compare an image with its plate)."""
    table = names.set_index("image_name").join(stats)
    table["too_few_cells"] = (table["n_cells"] < min_cells).astype(np.int64)
    table["is_outlier"] = table["too_few_cells"]
    if "focus_score" in table:
        table["out_of_focus"] = (table["focus_score"] < focus_fraction * table["focus_score"].median()).astype(np.int64)
        table["is_outlier"] = table["is_outlier"] | table["out_of_focus"]
    if "nucleus_diameter" in table:
        table["odd_nucleus_size"] = odd_sizes(table["nucleus_diameter"]).astype(np.int64)
        table["is_outlier"] = table["is_outlier"] | table["odd_nucleus_size"]
    table["score"] = table[f"median_{score_feature}"] if score_feature else np.nan
    table = table.reset_index()
    first = ["image_name", "site_name", "well_name", "n_cells", "score", "is_outlier", "too_few_cells"]
    flags = ("out_of_focus", "focus_score", "odd_nucleus_size", *IMAGE_ATTRIBUTES)
    first += [c for c in flags if c in table]
    return table[first + [c for c in table.columns if c not in first]]


#: An image whose nucleus diameter is this many times its plate's median (or less than its inverse) is odd.
ODD_SIZE = 1.5


def odd_sizes(diameters: pd.Series) -> pd.Series:
    """Whether each image's nucleus diameter is far from the plate's median (unknown: odd when others are known).

    Examples
    --------
    >>> odd_sizes(pd.Series([12.0, 13.0, 11.5, 30.0, float("nan")])).tolist()
    [False, False, False, True, True]
    """
    known = diameters[np.isfinite(diameters)]
    if known.empty:
        return pd.Series(False, index=diameters.index)
    ratio = diameters / known.median()
    return ~((ratio <= ODD_SIZE) & (ratio >= 1 / ODD_SIZE))


def well_table(
    cells: pd.DataFrame, images: pd.DataFrame, features: Sequence[str], score_feature: str | None
) -> pd.DataFrame:
    """One row per well: median of each feature over the well's cells, n_cells, n_images."""
    wells = sorted(images["well_name"].unique())
    return well_table_from_medians(images, well_feature_medians(cells, features, wells), score_feature)


def well_feature_medians(cells: pd.DataFrame, features: Sequence[str], wells: list[str]) -> pd.DataFrame:
    """``median_<feature>`` over the cells of each of ``wells`` (indexed by ``well_name``, in that order)."""
    cells = cells.reindex(columns=["well_name", *features])
    medians = cells.groupby("well_name")[list(features)].median().add_prefix("median_")
    return medians.reindex(pd.Index(wells, name="well_name"))


def well_table_from_medians(images: pd.DataFrame, medians: pd.DataFrame, score_feature: str | None) -> pd.DataFrame:
    """:func:`well_table` from the image table and each well's :func:`well_feature_medians`."""
    grouped = images.groupby("well_name", sort=True)
    sums = grouped[["is_outlier", "n_cells"]].sum()  # one groupby: a named aggregation costs 3x (watch latency)
    wells = pd.DataFrame(
        {
            "n_images": grouped.size(),
            "n_outlier_images": sums["is_outlier"],
            "n_cells": sums["n_cells"].astype(np.int64),
        }
    )
    table = wells.join(medians)
    table["score"] = table[f"median_{score_feature}"] if score_feature else np.nan
    table["is_outlier"] = (table["n_outlier_images"] == table["n_images"]).astype(np.int64)
    table = table.reset_index()
    first = ["well_name", "n_cells", "n_images", "score", "is_outlier"]
    return table[first + [c for c in table.columns if c not in first]]


def focus_score(image: np.ndarray) -> float:
    """Sharpness of an image: variance of its Laplacian over its squared mean (higher is sharper).

    NaN and infinite pixels are left out: set to the mean of the others, and
    the Laplacian next to them not counted.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> sharp = rng.random((64, 64)) * 100 + 100
    >>> from scipy.ndimage import gaussian_filter
    >>> focus_score(sharp) > 10 * focus_score(gaussian_filter(sharp, 3))
    True
    >>> with_inf = sharp.copy(); with_inf[5, 5] = np.inf
    >>> bool(np.isfinite(focus_score(with_inf)))
    True
    """
    from scipy.ndimage import binary_dilation, laplace

    image = image.astype(np.float64)
    finite = np.isfinite(image)
    if not finite.any():
        return 0.0
    mean = image[finite].mean()
    if finite.all():
        return float(laplace(image).var() / mean**2) if mean > 0 else 0.0
    response = laplace(np.where(finite, image, mean))
    near = binary_dilation(~finite)  # the Laplacian reaches one pixel around a filled one
    return float(response[~near].var() / mean**2) if mean > 0 and (~near).any() else 0.0


def image_focus(path: str, channel: str) -> float:
    """:func:`focus_score` of ``channel`` in a container, at the first downscaled level if there is one."""
    with open_file(path, "r") as f:
        level = "s1" if f"{channel}/s1" in f else "s0"
        return focus_score(f[f"{channel}/{level}"][...])


def cell_table_keys(cell_key: str | None, nuclei_key: str) -> list[str]:
    """Keys of the cells, nuclei and cytoplasm tables MeasureObjects writes (the nuclei table only without cells).

    Examples
    --------
    >>> cell_table_keys(None, "nucleus_segmentation")
    ['tables/nucleus_segmentation/default']
    """
    if cell_key is None:
        return [table_key(f"{nuclei_key}/default")]
    return [table_key(f"{cell_key}/default"), table_key(f"{nuclei_key}/default"), table_key(f"{cell_key}/cytoplasm")]


def read_image_cells(
    input_files: list[str],
    table_keys: list[str],
    scheme: str,
    map_calls: Callable | None = None,
    cache: CellCache | None = None,
) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """Each image's cells (in sorted path order; cell, nucleus and cytoplasm features joined) and all images' names.

    ``map_calls(fn, arg_list)`` reads the images' tables (a plate job passes
    its :meth:`~batchlib.base.BatchJob.map_parallel` to read them in the
    workers); default a plain loop. With a ``cache``, only containers that
    changed since it last read them are read.
    """
    paths = sorted(input_files)
    if cache is not None:
        results = cache.get(image_cells, paths, (list(table_keys), scheme), map_calls)
    else:
        calls = [(path, list(table_keys), scheme) for path in paths]
        results = map_calls(image_cells, calls) if map_calls else [image_cells(*call) for call in calls]
    frames = [table for table, _ in results]
    names = [name for _, name in results]
    return frames, pd.DataFrame(names, columns=["image_name", "site_name", "well_name", *IMAGE_ATTRIBUTES])


def concat_cells(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One table of the cells of ``frames`` (an empty one with the name columns if there are none)."""
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["image_name", "well_name"])


def numeric_features(frames: list[pd.DataFrame], schemas: dict | None = None) -> list[str]:
    """The feature columns of the cells of ``frames`` (numeric ones, in order of first appearance).

    The same as the numeric columns of ``concat_cells(frames)`` other than
    the names and ``label_id``, without building that table. ``schemas``
    keeps each frame's columns and types between calls (by the frame's
    ``id``; a job passes the same dict while its cache holds the same frame
    objects): reading them is the costly part for a plate of hundreds of images.
    """
    columns: dict[str, bool] = {}
    seen = set()
    known = {} if schemas is None else schemas
    for frame in frames:
        schema = known.get(id(frame))
        if schema is None or schema[0] is not frame:
            schema = known[id(frame)] = (frame, tuple(frame.columns.tolist()), tuple(frame.dtypes.tolist()))
        if schema[1:] in seen:  # the images of a plate nearly all have the same columns
            continue
        seen.add(schema[1:])
        for name, dtype in zip(schema[1], schema[2]):
            columns[name] = columns.get(name, True) and pd.api.types.is_numeric_dtype(dtype)
    if schemas is not None:  # forget frames no longer asked for
        wanted = {id(frame) for frame in frames}
        for key in [k for k in schemas if k not in wanted]:
            del schemas[key]
    return [c for c, numeric in columns.items() if numeric and c not in ("image_name", "well_name", "label_id")]


#: Root attributes of a container that become columns of the image table, with their value when missing.
IMAGE_ATTRIBUTES = {
    "n_nonfinite_pixels": (NONFINITE_ATTR, 0),
    "pixel_size_um": (PIXEL_SIZE_ATTR, float("nan")),
    "nucleus_diameter": (DIAMETER_ATTR, float("nan")),
    "segmentation_scale": (SCALE_ATTR, float("nan")),
}


def join_on_labels(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """The first table with the columns of the others added by ``label_id`` (a left join, in its row order).

    The cell, nucleus and cytoplasm tables of an image usually list the same
    labels in the same order: then the columns are put side by side, which
    gives what ``merge(on="label_id", how="left")`` gives at half the cost.

    Examples
    --------
    >>> cells = pd.DataFrame({"label_id": [1, 2], "Cells_Area": [5, 6]})
    >>> nuclei = pd.DataFrame({"label_id": [2, 1], "Nuclei_Area": [3, 2]})
    >>> join_on_labels([cells, nuclei]).to_dict("list")
    {'label_id': [1, 2], 'Cells_Area': [5, 6], 'Nuclei_Area': [2, 3]}
    """
    labels = tables[0]["label_id"].to_numpy()
    aligned = len(labels) < 2 or bool(np.all(labels[1:] > labels[:-1]))  # unique, increasing
    aligned = aligned and all(np.array_equal(labels, other["label_id"].to_numpy()) for other in tables[1:])
    names = [name for t in tables for name in t.columns if name != "label_id"]
    aligned = aligned and len(set(names)) == len(names)  # merge would add suffixes to a shared name
    if aligned and all(isinstance(t.index, pd.RangeIndex) and t.index.start == 0 for t in tables):
        return pd.concat([tables[0], *(other.drop(columns="label_id") for other in tables[1:])], axis=1)
    table = tables[0]
    for other in tables[1:]:
        table = table.merge(other, on="label_id", how="left")
    return table


def image_cells(path: str, table_keys: list[str], scheme: str) -> tuple[pd.DataFrame, tuple]:
    """One image's cells (cell, nucleus and cytoplasm features joined; nuclei only) and its (image, site, well) names.

    The names end with the values of :data:`IMAGE_ATTRIBUTES` (the count of
    NaN and infinite pixels, the nucleus diameter and rescaling factor of the
    nuclei segmentation).
    """
    image_name = os.path.splitext(os.path.basename(path))[0]
    parsed = parse_image_name(os.path.basename(path), compile_scheme(scheme))
    with open_file(path, "r") as f:
        tables = [read_table(f, key.removeprefix("tables/")) for key in table_keys]
        attributes = tuple(type(missing)(f.attrs.get(key, missing)) for key, missing in IMAGE_ATTRIBUTES.values())
    table = join_on_labels(tables)
    table.insert(0, "image_name", image_name)
    table.insert(1, "well_name", parsed.well.name)
    return table, (image_name, parsed.site_name, parsed.well.name, *attributes)


def with_missing_fields(images: pd.DataFrame, wells: pd.DataFrame, plate) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tables with a row per field the plate metadata lists but the plate has no container of.

    Such an image row has ``missing_on_disk`` 1, no cells and ``is_outlier``
    1; a well counts them in ``n_missing_images`` (a well with only missing
    fields gets a row with no images).
    """
    present = set(images["image_name"])
    rows = [
        {"image_name": name, "site_name": site_name(well, field), "well_name": well, "n_cells": 0, "is_outlier": 1}
        for well, field in sorted(plate.fields)
        if (name := plate.container(well, field)) not in present
    ]
    images = images.assign(missing_on_disk=0)
    if rows:
        images = pd.concat([images, pd.DataFrame(rows).assign(missing_on_disk=1)], ignore_index=True)
        images = images.sort_values("image_name", kind="stable").reset_index(drop=True)
    for column in ("n_cells", "is_outlier", "missing_on_disk"):
        images[column] = images[column].astype(np.int64)
    counts = pd.Series([r["well_name"] for r in rows], dtype=object).value_counts()
    extra = sorted(set(counts.index) - set(wells["well_name"]))
    if extra:
        empty = pd.DataFrame({"well_name": extra, "n_cells": 0, "n_images": 0, "is_outlier": 1})
        wells = pd.concat([wells, empty], ignore_index=True).sort_values("well_name").reset_index(drop=True)
    wells["n_missing_images"] = wells["well_name"].map(counts).fillna(0).astype(np.int64)
    for column in ("n_cells", "n_images", "is_outlier"):
        wells[column] = wells[column].astype(np.int64)
    return images, wells


class AggregateTables(PlateMapOption, PlateJob):
    """Image table and well table of the plate, as the plate viewer's ``default`` tables.

    Reads the ``Cells`` table of every container (one row per cell, with the
    nucleus and cytoplasm features of the same object joined in) and writes
    ``/tables/images/default`` and ``/tables/wells/default`` into
    ``<plate>_table.hdf5``. Reruns when any image's tables change or images
    are added.

    Parameters
    ----------
    cell_key, nuclei_key : str
        The segmentations whose tables are aggregated; ``cell_key=None``:
        the nuclei only (a plate without a cell channel).
    min_cells : int
        Images with fewer cells are flagged ``too_few_cells`` (``is_outlier``).
    focus_channel : str, optional
        Channel whose sharpness (:func:`focus_score`) flags ``out_of_focus``
        images; None turns the check off.
    focus_fraction : float
        An image is out of focus below this fraction of the plate's median score.
    score_feature : str, optional
        Feature whose median is the ``score`` column (the viewer's default
        scatter plot shows ``score`` against ``n_cells``).
    scheme : str
        Filename scheme giving well and site of each container.
    raw_metadata : (str, str), optional
        The raw folder and its metadata format (``harmony``, ``imagexpress``,
        ``ome-tiff``): fields the plate metadata lists without a container
        get a row in the image table with ``missing_on_disk`` 1 (and
        ``is_outlier`` 1), and wells count them in ``n_missing_images``.
    platemap : str, optional
        The plate's plate map, or a batch's barcode_platemap.csv
        (:mod:`batchlib.platemap`): its columns (``Metadata_<name>``) are
        added to both tables after ``well_name``.
    """

    parameter_names: ClassVar[tuple[str, ...]] = (
        "table_keys",
        "min_cells",
        "score_feature",
        "focus_channel",
        "focus_fraction",
        "scheme",
        "platemap",
    )

    def __init__(
        self,
        cell_key: str | None = "cell_segmentation",
        nuclei_key: str = "nucleus_segmentation",
        min_cells: int = 10,
        score_feature: str | None = None,
        focus_channel: str | None = "nuclei",
        focus_fraction: float = 0.3,
        scheme: str = "batchlib",
        raw_metadata: tuple[str, str] | None = None,
        platemap: str | None = None,
        input_pattern: str = "*.h5",
        identifier: str | None = None,
    ):
        self._raw_metadata = raw_metadata
        self._plate = None  # the raw folder's plate metadata, read in the driver (layout)
        self._cache: CellCache | None = None  # the plate's cells as read: plate_cell_cache
        self._image_rows = GroupRows()  # each image's statistics, kept between those runs
        self._well_rows = GroupRows()  # each well's medians, kept between those runs
        self._schemas: dict = {}  # each cached frame's columns and types (numeric_features)
        self.table_keys = cell_table_keys(cell_key, nuclei_key)
        super().__init__(
            input_pattern=input_pattern,
            output_name="{plate}_table.hdf5",
            input_key=[*self.table_keys, *([focus_channel] if focus_channel else [])],
            output_key=[table_key("images/default"), table_key("wells/default")],
            identifier=identifier,
        )
        self.min_cells = int(min_cells)
        self.score_feature = score_feature
        self.focus_channel = focus_channel
        self.focus_fraction = float(focus_fraction)
        self.scheme = scheme
        self.platemap = os.fspath(platemap) if platemap is not None else None

    def layout(self, folder, input_folder=None, run_kwargs=None):
        """Read the raw folder's plate metadata (with ``raw_metadata``) and find the plate map, then lay out."""
        self.resolve_platemap(folder)
        if self._raw_metadata is not None:
            from ..readers import read_plate_metadata

            raw, format = self._raw_metadata
            self._plate = read_plate_metadata(raw, format) if raw and os.path.isdir(raw) else None
        return super().layout(folder, input_folder, run_kwargs)

    def parameters(self) -> dict:
        parameters = {**super().parameters(), **self.platemap_parameters()}
        if self._plate is not None:  # a change of the listed fields rewrites the tables
            parameters["expected_fields"] = sorted(self._plate.fields)
        return parameters

    def __getstate__(self) -> dict:  # never ship what was read or computed to a worker
        fresh = {"_cache": None, "_image_rows": GroupRows(), "_well_rows": GroupRows(), "_schemas": {}}
        return {**vars(self), **fresh}

    def run(self, input_files, output_files, **kwargs):
        paths = sorted(input_files)
        self._cache = plate_cell_cache(os.path.dirname(output_files[0]))  # shared with the other plate jobs
        frames, names = read_image_cells(paths, self.table_keys, self.scheme, self.map_parallel, self._cache)
        stamps = [self._cache.stamps[p] for p in paths]
        if self.focus_channel:
            names["focus_score"] = self._cache.get(image_focus, paths, (self.focus_channel,), self.map_parallel)
        features = numeric_features(frames, self._schemas)
        image_names, well_names = names["image_name"].tolist(), names["well_name"].tolist()
        cells_of = dict(zip(image_names, frames))
        wells_of = dict(zip(image_names, well_names))

        def stats_of(images: list[str]) -> pd.DataFrame:
            return image_stats(concat_cells([cells_of[i] for i in images]), features, images)

        def medians_of(wells: list[str]) -> pd.DataFrame:
            chosen = set(wells)
            frames = [cells for image, cells in cells_of.items() if wells_of[image] in chosen]
            return well_feature_medians(concat_cells(frames), features, wells)

        # A row is computed again only when what it is computed from changed (the watcher's runs).
        feature_key = tuple(features)
        image_tokens = {image: (stamp, feature_key) for image, stamp in zip(image_names, stamps)}
        well_images: dict[str, list] = {}
        for image, well, stamp in zip(image_names, well_names, stamps):
            well_images.setdefault(well, []).append((image, stamp))
        well_tokens = {well: (tuple(well_images[well]), feature_key) for well in sorted(well_images)}
        stats = self._image_rows.update(image_tokens, stats_of)
        images = image_table_from_stats(stats, names, self.min_cells, self.score_feature, self.focus_fraction)
        wells = well_table_from_medians(images, self._well_rows.update(well_tokens, medians_of), self.score_feature)
        if self._plate is not None:
            images, wells = with_missing_fields(images, wells, self._plate)
        platemap = self.platemap_table()
        if platemap is not None:
            images = annotate(images, platemap, "well_name", after="well_name", source=self._platemap_file)
            wells = annotate(wells, platemap, "well_name", after="well_name")
        with open_file(output_files[0], "a") as f:
            write_plate_table(f, "images", images)
            write_plate_table(f, "wells", wells)
