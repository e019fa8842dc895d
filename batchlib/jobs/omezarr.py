"""Export a plate folder of containers as an OME-Zarr HCS plate."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import ClassVar

from ..base import PlateJob
from ..io import open_file, read_image, read_key_stamps
from ..io.images import PIXEL_SIZE_ATTR, image_levels
from ..io.omezarr import (
    FIELD_LAYOUT,
    FieldImage,
    field_source,
    open_plate,
    remove_field,
    write_field,
    write_plate_metadata,
)
from ..log import get_logger
from ..plate import Well, compile_scheme, parse_image_name
from ..state.stamps import stat_stamp


class OmeZarrExport(PlateJob):
    """Write ``<plate>.ome.zarr``: wells, fields, multiscale channels and label images.

    Incremental: each field remembers the stamps of the container keys it was
    made from; a rerun writes only new or changed fields, removes fields whose
    image left the plate, and rewrites the (small) plate and well metadata.

    Parameters
    ----------
    channels : list of str
        Image groups exported as the channels of each field.
    labels : list of str
        Label image groups exported under ``labels/``.
    ngff_version : str
        NGFF version, ``"0.4"`` (Zarr 2, default) or ``"0.5"`` (Zarr 3).
    pixel_size : float, optional
        Pixel size in micrometers (for the scale transforms); default: each
        container's ``pixel_size_um`` (from the plate metadata), else 1.
    plate_size : int, optional
        Wells of the plate (96, 384, 1536, ...); default the smallest of
        96, 384, 1536 that holds the wells present.
    scheme : str
        Filename scheme (name in :data:`batchlib.plate.FILENAME_SCHEMES` or a
        regular expression) giving well and site from the container names.
    input_pattern : str
        Containers to export.
    """

    parameter_names: ClassVar[tuple[str, ...]] = (
        "channels",
        "labels",
        "ngff_version",
        "pixel_size",
        "plate_size",
        "scheme",
    )

    atomic_outputs = False  # the plate is updated in place, field by field
    # A new field layout reruns the job over unchanged inputs; the layout in the stamps then rewrites every field.
    version = str(FIELD_LAYOUT)

    def __init__(
        self,
        channels: Sequence[str],
        labels: Sequence[str] = (),
        ngff_version: str = "0.4",
        pixel_size: float | None = None,
        plate_size: int | None = None,
        scheme: str = "batchlib",
        input_pattern: str = "*.h5",
        identifier: str | None = None,
    ):
        super().__init__(
            input_pattern=input_pattern,
            output_name="{plate}.ome.zarr",
            input_key=[*channels, *labels],
            identifier=identifier,
        )
        self.channels = list(channels)
        self.labels = list(labels)
        self.ngff_version = ngff_version
        self.pixel_size = None if pixel_size is None else float(pixel_size)
        self.plate_size = plate_size
        self.scheme = scheme
        compile_scheme(scheme)  # fail early on a bad scheme

    def validate_input(self, path: str):
        problem = super().validate_input(path)
        if problem:
            return problem
        try:
            parse_image_name(os.path.basename(path), self.scheme)
        except Exception as err:
            return str(err)
        return None

    def run(self, input_files, output_files, **kwargs):
        logger = get_logger(self.name)
        regex = compile_scheme(self.scheme)
        plate_path = output_files[0]
        plate = open_plate(plate_path, self.ngff_version)
        plate_name = os.path.basename(plate_path).removesuffix(".ome.zarr")
        wanted: dict[tuple[Well, int], str] = {}
        for path in sorted(input_files):
            name = parse_image_name(os.path.basename(path), regex)
            wanted[(name.well, name.site)] = path

        existing = _existing_fields(plate)
        for well, field in existing - set(wanted):
            remove_field(plate, well, field)
        # Fields are independent folders of the plate: with n_jobs > 1 the workers check and write them in parallel.
        fields = [
            (plate_path, self.ngff_version, well, field, path, self.channels, self.labels, self.pixel_size)
            for (well, field), path in wanted.items()
        ]
        written = sum(self.map_parallel(export_field, fields))
        wells: dict[Well, list[int]] = {}
        for well, field in wanted:
            wells.setdefault(well, []).append(field)
        _remove_empty_wells(plate, {w for w, _ in existing} - set(wells))
        # In a worker: it has imported ome-zarr-py's writers for the fields already.
        self.call_in_worker(plate_metadata, plate_path, self.ngff_version, plate_name, wells, self.plate_size)
        logger.info(
            "%s: wrote %d field(s), kept %d, removed %d",
            plate_path,
            written,
            len(wanted) - written,
            len(existing - set(wanted)),
        )


def export_field(
    plate_path: str,
    version: str,
    well: Well,
    field: int,
    path: str,
    channels: list[str],
    labels: list[str],
    pixel_size: float | None,
) -> bool:
    """Write one field of the OME-Zarr plate from container ``path`` unless it is up to date (runs in any worker).

    Returns whether the field was written.
    """
    plate = open_plate(plate_path, version)
    source = _source_stamp(path, [*channels, *labels])
    if field_source(plate, well, field) == source:
        return False
    with open_file(path, "r") as f:
        scale_factors = [int(v) for v in f[channels[0]].attrs["ScaleFactors"]]
        n_levels = len(image_levels(f[channels[0]]))
        images = [(c, [read_image(f, c, i) for i in range(n_levels)], dict(f[c].attrs)) for c in channels]
        label_images = [(lab, [read_image(f, lab, i) for i in range(n_levels)]) for lab in labels]
        if pixel_size is None:
            pixel_size = float(f.attrs.get(PIXEL_SIZE_ATTR, 1.0))
    write_field(plate, well, field, FieldImage(images, label_images, source), scale_factors, pixel_size, version)
    return True


def plate_metadata(
    plate_path: str, version: str, name: str, wells: dict[Well, list[int]], plate_size: int | None
) -> None:
    """Write the plate and well metadata of the plate at ``plate_path`` (runs in any worker)."""
    write_plate_metadata(open_plate(plate_path, version), name, wells, version, plate_size)


def _source_stamp(path: str, keys: list[str]) -> str:
    stamps = read_key_stamps(path, keys, stat_stamp(os.stat(path)))
    return f"layout={FIELD_LAYOUT}|{os.path.basename(path)}|" + "|".join(f"{k}={stamps[k]}" for k in keys)


def _existing_fields(plate) -> set[tuple[Well, int]]:
    from ..plate import row_index

    fields = set()
    for row in plate.group_keys():
        for column in plate[row].group_keys():
            if not column.isdigit():
                continue
            for field in plate[f"{row}/{column}"].group_keys():
                if field.isdigit():
                    fields.add((Well(row_index(row), int(column) - 1), int(field)))
    return fields


def _remove_empty_wells(plate, wells: set[Well]) -> None:
    for well in wells:
        path = f"{well.row_name}/{well.column_name}"
        if path in plate:
            del plate[path]
        if well.row_name in plate and not list(plate[well.row_name].group_keys()):
            del plate[well.row_name]
