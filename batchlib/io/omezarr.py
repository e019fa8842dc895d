"""Writing an OME-NGFF (OME-Zarr) high-content-screening plate.

Layout (the NGFF specification's high-content screening plate, with labels)::

    <plate>.ome.zarr/<row>/<column>/<field>/<level>
                                   /<field>/labels/<label name>/<level>

A field's group carries ``multiscales`` and ``omero``, its ``labels`` group
the list of label names, each label's group ``multiscales`` and
``image-label``: where ome-zarr-py's writers put them.

NGFF 0.4 (Zarr format 2, the version most readers know) by default, 0.5
(Zarr format 3) as an option. The metadata is made by ome-zarr-py's writer
functions (a field's on groups in memory, then written one file per group);
the arrays are created and their chunks written directly for local stores,
through zarr-python otherwise. Fields are written one at
a time and carry the stamp of their source, so adding images to a plate adds
fields without rewriting the others.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ContainerError
from ..plate import Well, plate_format, row_name

VERSIONS = ("0.4", "0.5")
#: Field attribute holding the stamp of the container the field came from.
SOURCE_ATTR = "batchlib_source"
#: Version of the group metadata :func:`write_field` writes; the export job puts it in the source stamp, so
#: fields of an older layout count as out of date. 2: the label names listed on the labels group only
#: (layout 1 also listed them on the image group, where readers took the field for a labels group).
FIELD_LAYOUT = 2
COLOR_HEX = {"White": "FFFFFF", "Gray": "FFFFFF", "Red": "FF0000", "Green": "00FF00", "Blue": "0000FF"}


@dataclass
class FieldImage:
    """One field of view to export.

    Attributes
    ----------
    channels : list of (name, levels, attrs)
        Per channel: its name, its pyramid (list of 2D arrays, finest first)
        and its viewer attributes (Color, ContrastLimits).
    labels : list of (name, levels)
        Label pyramids with the same levels.
    source : str
        Stamp of the source, stored on the field.
    """

    channels: list[tuple[str, list[np.ndarray], dict]]
    labels: list[tuple[str, list[np.ndarray]]]
    source: str


def _format(version: str):
    from ome_zarr.format import FormatV04, FormatV05

    if version not in VERSIONS:
        raise ContainerError(f"NGFF version must be one of {', '.join(VERSIONS)}, got {version!r}")
    return FormatV04() if version == "0.4" else FormatV05()


def open_plate(path: str | os.PathLike, version: str = "0.4", mode: str = "a"):
    """Open (or create) the root group of an OME-Zarr plate."""
    import zarr

    zarr_format = 2 if version == "0.4" else 3
    path = os.fspath(path)
    if os.path.exists(path):
        root = zarr.open_group(path, mode=mode)
        if root.metadata.zarr_format != zarr_format:
            raise ContainerError(
                f"{path} is a Zarr format {root.metadata.zarr_format} plate but NGFF {version} needs format "
                f"{zarr_format}; remove it or export with the version it has"
            )
        return root
    return zarr.open_group(path, mode="w", zarr_format=zarr_format)


def _require_group(parent, path: str):
    """``parent.require_group(path)``, creating missing local groups without zarr's event loop."""
    from .zarrchunks import contains, create_group

    group = parent
    for name in path.split("/"):
        if contains(group, name):
            group = group[name]
            continue
        # Not `create_group(...) or ...`: a zarr group's truth value is its number of members,
        # which lists the folder and is False for the new, empty group.
        created = create_group(group, name)
        group = created if created is not None else group.require_group(name)
    return group


def _create_array(group, name: str, data: np.ndarray, chunks: tuple, version: str, dims: Sequence[str]):
    from .threads import THREADS
    from .zarrchunks import contains, create_array, write_chunks

    present = contains(group, name)  # from the files; None: ask zarr
    if present or (present is None and name in group):
        del group[name]
    # Local stores: metadata and chunks written directly (zarr-python awaits each one), zstd level 3.
    if version == "0.4":
        array = create_array(group, name, data.shape, data.dtype, chunks, "zstd", 3, dimension_separator="/")
    else:
        array = create_array(group, name, data.shape, data.dtype, chunks, "zstd", 3, dimension_names=list(dims))
    if array is not None and write_chunks(array, data, threads=THREADS):
        return array
    return _create_array_with_zarr(group, name, data, chunks, version, dims)


def _create_array_with_zarr(group, name: str, data: np.ndarray, chunks: tuple, version: str, dims: Sequence[str]):
    import zarr

    if name in group:
        del group[name]
    if version == "0.4":
        from numcodecs import Zstd

        return group.create_array(
            name,
            data=data,
            chunks=chunks,
            compressors=Zstd(level=3),
            chunk_key_encoding={"name": "v2", "separator": "/"},
        )
    return group.create_array(
        name, data=data, chunks=chunks, compressors=zarr.codecs.ZstdCodec(level=3), dimension_names=list(dims)
    )


def _axes(with_channel: bool) -> list[dict]:
    space = [{"name": "y", "type": "space", "unit": "micrometer"}, {"name": "x", "type": "space", "unit": "micrometer"}]
    return ([{"name": "c", "type": "channel"}] if with_channel else []) + space


def _datasets(n_levels: int, factors: Sequence[int], pixel_size: float, with_channel: bool) -> list[dict]:
    datasets = []
    for level in range(n_levels):
        scale = [pixel_size * factors[level]] * 2
        datasets.append(
            {
                "path": str(level),
                "coordinateTransformations": [{"type": "scale", "scale": ([1.0] if with_channel else []) + scale}],
            }
        )
    return datasets


def field_source(plate, well: Well, field: int) -> str | None:
    """The source stamp stored on a field, or None if the field does not exist."""
    path = f"{well.row_name}/{well.column_name}/{field}"
    if path not in plate:
        return None
    return plate[path].attrs.get(SOURCE_ATTR)


def write_field(
    plate,
    well: Well,
    field: int,
    image: FieldImage,
    scale_factors: Sequence[int],
    pixel_size: float = 1.0,
    version: str = "0.4",
    chunk: int = 512,
) -> None:
    """Write (or replace) one field of a well: multiscale image, omero metadata, labels.

    The field's attributes are written last, each group's in one write, the
    source stamp with them: a field without its stamp is rewritten next time.
    """
    group = _require_group(plate, f"{well.row_name}/{well.column_name}/{field}")
    n_levels = len(image.channels[0][1])
    for level in range(n_levels):
        stack = np.stack([levels[level] for _, levels, _ in image.channels])
        chunks = (1, min(chunk, stack.shape[1]), min(chunk, stack.shape[2]))
        _create_array(group, str(level), stack, chunks, version, ("c", "y", "x"))
    label_names = tuple(name for name, _ in image.labels)
    for name, levels in image.labels:
        label_group = _require_group(group, f"labels/{name}")
        for level, data in enumerate(levels):
            chunks = (min(chunk, data.shape[0]), min(chunk, data.shape[1]))
            _create_array(label_group, str(level), data, chunks, version, ("y", "x"))

    attributes = copy.deepcopy(_field_metadata(version, n_levels, tuple(scale_factors), pixel_size, label_names))
    _add_ome_attr(attributes[""], "omero", _omero(image.channels, version), version)
    attributes[""][SOURCE_ATTR] = image.source
    for path in sorted(attributes, key=len, reverse=True):  # the field's own group last
        _write_attributes(group[path] if path else group, attributes[path])


@functools.lru_cache(maxsize=16)
def _field_metadata(
    version: str, n_levels: int, scale_factors: tuple[int, ...], pixel_size: float, label_names: tuple[str, ...]
) -> dict[str, dict]:
    """Attributes of a field's groups by path ("", "labels", "labels/<name>"), omero and source aside.

    Made by ome-zarr-py's writers on groups in memory (they rewrite every
    attribute of a group on each call, ~23 file writes per field on disk),
    once per worker for fields of the same shape.
    """
    import zarr
    from ome_zarr.writer import write_label_metadata, write_multiscales_metadata
    from zarr.storage import MemoryStore

    fmt = _format(version)
    field = zarr.open_group(MemoryStore(), mode="w", zarr_format=2 if version == "0.4" else 3)
    write_multiscales_metadata(
        field, _datasets(n_levels, scale_factors, pixel_size, True), fmt=fmt, axes=_axes(True), name="image"
    )
    paths = [""]
    if label_names:
        labels_group = field.require_group("labels")
        for name in label_names:
            label_group = labels_group.require_group(name)
            write_multiscales_metadata(
                label_group,
                _datasets(n_levels, scale_factors, pixel_size, False),
                fmt=fmt,
                axes=_axes(False),
                name=name,
            )
            # The labels group, as write_multiscale_labels passes it: the list of names goes there, not on the image.
            write_label_metadata(labels_group, name, fmt=fmt, source={"image": "../../"})
        paths += ["labels", *(f"labels/{name}" for name in label_names)]
    # Read back through fresh group objects: the writers open their own and a group caches its attributes.
    attributes = {path: (field[path] if path else field).attrs.asdict() for path in paths}
    if label_names and version != "0.4":
        # NGFF 0.5 puts the version in every "ome" attribute; ome-zarr-py leaves it out on the labels group.
        attributes["labels"]["ome"]["version"] = version
    return attributes


def _write_attributes(group, attributes: dict) -> None:
    """Replace the attributes of a zarr group: one file write for local groups, else one zarr call."""
    from .zarrchunks import write_group_attributes

    if not write_group_attributes(group, attributes):
        group.attrs.put(attributes)


def _add_ome_attr(attributes: dict, key: str, value, version: str) -> None:
    if version == "0.4":
        attributes[key] = value
    else:
        attributes.setdefault("ome", {}).update({"version": version, key: value})


def _omero(channels, version: str) -> dict:
    entries = []
    for name, levels, attrs in channels:
        dtype = levels[0].dtype
        lo, hi = (0.0, float(np.iinfo(dtype).max)) if np.issubdtype(dtype, np.integer) else (0.0, 1.0)
        start, end = [float(v) for v in attrs.get("ContrastLimits", (lo, hi))]
        entries.append(
            {
                "label": name,
                "color": COLOR_HEX.get(attrs.get("Color", "White"), "FFFFFF"),
                "window": {"start": start, "end": end, "min": lo, "max": hi},
                "active": True,
            }
        )
    omero = {"channels": entries, "rdefs": {"model": "color"}}
    if version == "0.4":
        omero["version"] = version
    return omero


def remove_field(plate, well: Well, field: int) -> None:
    """Delete a field (its source image is gone)."""
    path = f"{well.row_name}/{well.column_name}/{field}"
    if path in plate:
        del plate[path]


def write_plate_metadata(
    plate, name: str, wells: dict[Well, list[int]], version: str = "0.4", plate_size: int | None = None
) -> None:
    """Write the plate and well metadata for the wells and fields present.

    Rows and columns list the whole plate (``plate_size`` wells, or the
    smallest of 96, 384, 1536 that holds them);
    well groups exist only where a well has fields.
    """
    from ome_zarr.writer import write_plate_metadata as ome_plate
    from ome_zarr.writer import write_well_metadata

    fmt = _format(version)
    n_rows, n_cols = plate_format(list(wells), plate_size)
    rows = [row_name(i) for i in range(n_rows)]
    columns = [str(j + 1) for j in range(n_cols)]
    present = {w: sorted(f) for w, f in wells.items() if f}
    for well, fields in present.items():
        group = plate.require_group(f"{well.row_name}/{well.column_name}")
        write_well_metadata(group, [{"path": str(f), "acquisition": 0} for f in fields], fmt=fmt)
    well_list = [
        {"path": f"{w.row_name}/{w.column_name}", "rowIndex": w.row, "columnIndex": w.column} for w in sorted(present)
    ]
    field_count = max((len(f) for f in present.values()), default=0)
    ome_plate(
        plate,
        rows,
        columns,
        well_list,
        fmt=fmt,
        name=name,
        field_count=field_count,
        acquisitions=[{"id": 0, "name": name, "maximumfieldcount": field_count}],
    )
