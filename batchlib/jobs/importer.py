"""Import raw TIFFs into one container per image, a multiscale image per channel."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from ..base import BatchJobOnContainer
from ..errors import ConfigError, InvalidInputError
from ..io import open_file, set_image_info, write_image
from ..io.images import PIXEL_SIZE_ATTR
from ..oserrors import input_error, resource_error
from ..plate import ImageName, compile_scheme, parse_image_name, parse_well
from ..readers import METADATA_FORMATS, PlateMetadata, read_plate_metadata
from .raw_files import (
    GIB,
    describe_size,
    list_names,
    plate_reference,
    raw_channel_names,
    read_tiff,
    reference_key,
    tiff_header,
)

#: Root attribute of a container: how many pixels of its imported channels are NaN or infinite.
NONFINITE_ATTR = "batchlib_nonfinite_pixels"

#: Raw files of a scheme when no input pattern is given (default ``*.tiff``).
DEFAULT_PATTERNS = {"imagexpress": "*.tif*", "ome-tiff": "*.ome.tif*"}

#: Viewer colours for common semantic channel names.
DEFAULT_COLORS = {"nuclei": "Blue", "cells": "Gray", "marker": "Green", "serum": "Green"}


class ImportImages(BatchJobOnContainer):
    """Raw multi-channel TIFFs -> ``<name>.h5`` with one multiscale image per channel.

    Parameters
    ----------
    channels : dict
        Raw channel name -> name in the container (``{"DAPI": "nuclei"}``);
        raw channels mapped to None or missing from the mapping are dropped.
    input_pattern : str, optional
        Glob of the raw files; default ``*.tiff``, for ``imagexpress``
        ``*.tif*`` and for ``ome-tiff`` ``*.ome.tif*``.
    output_ext : str
        Container type: ``.h5`` (default), ``.n5`` or ``.zarr``.
    scheme : str
        Filename scheme (name in :data:`batchlib.plate.FILENAME_SCHEMES` or a
        regular expression) giving well, site and channel names; or a
        microscope format whose plate metadata is read
        (:data:`batchlib.readers.METADATA_FORMATS`): ``harmony`` (the
        ``Index.xml`` / ``Index.idx.xml`` of a Harmony export; one file per
        channel and plane, always grouped by site) or ``imagexpress`` (with
        its ``.HTD``, if the folder has one). With metadata, ``channels`` may
        map channel names (``{"HOECHST 33342": "nuclei"}``) or ids
        (``{"1": "nuclei"}``); the pixel size goes into each container; a
        raw file the metadata does not list is invalid, and the fields it
        lists without files are reported (:meth:`missing_inputs`).
    colors : dict, optional
        Viewer colour per container channel name.
    one_file_per_channel : bool
        Raw files hold one channel each (Operetta, ImageXpress): the files of
        a site are imported together into one container named
        ``Well<W>_Point<W>_<site>_<plate>`` (the plate viewer's naming, so the
        jobs after the import use ``scheme="viewer"``); the raw channel name
        is the scheme's ``channel`` group (``"1"`` for ``ch1`` / ``w1``).
    image_shape : tuple of int, optional
        The plate's image shape, ``(channels, y, x)`` (``(1, y, x)`` for one
        channel per file); default: the shape most of its files have.
    dtype : str, optional
        The plate's pixel type (``"uint16"``); default: the most common one.
    max_image_gib : float
        A file whose header claims a larger image is invalid (never read).
    max_nonfinite_fraction : float
        A float image with more NaN or infinite pixels than this fraction
        (over its imported channels) is invalid.
    input_folder, identifier
        As for every job.

    Notes
    -----
    Invalid inputs, recorded with the reason: a file that does not match
    the scheme, is not a readable TIFF (corrupt, cut short, unreadable), lacks
    a mapped channel, claims more than ``max_image_gib``, is mostly NaN, or
    differs in shape, dtype or channel names from the plate (the shape, dtype
    and channel set most of the plate's files share, or the ones declared);
    and a second file for the same well and site (and channel, with
    ``one_file_per_channel``): the first in name order is imported, unless the
    other was imported already. Only files that match the scheme take part
    in the plate's reference. The verdicts that depend on other files or on
    the limits are checked again on every run, so they heal once the cause is
    gone. A float image with a few NaN or infinite pixels is imported with a
    warning; their number is the root attribute ``batchlib_nonfinite_pixels``
    (and a column of the image table). The limits and the declared
    reference are not parameters: changing them re-checks the files they
    made invalid, and leaves imported images alone.
    """

    parameter_names: ClassVar[tuple[str, ...]] = ("channels", "scheme", "group_by", "colors")
    facts_version: ClassVar[str] = "2"  # 2: channels stored as samples of each pixel (YXS) count as channels

    def __init__(
        self,
        channels: Mapping[str, str | None],
        input_pattern: str | None = None,
        output_ext: str = ".h5",
        scheme: str = "batchlib",
        colors: Mapping[str, str] | None = None,
        one_file_per_channel: bool = False,
        image_shape: Sequence[int] | None = None,
        dtype: str | None = None,
        max_image_gib: float = 4.0,
        max_nonfinite_fraction: float = 0.5,
        input_folder: str | os.PathLike | None = None,
        identifier: str | None = None,
    ):
        mapped = {raw: name for raw, name in channels.items() if name}
        if not mapped:
            raise ConfigError("channels: map at least one raw channel to a name, e.g. {'DAPI': 'nuclei'}")
        if len(set(mapped.values())) != len(mapped):
            raise ConfigError(f"channels: two raw channels map to the same name in {dict(channels)}")
        if image_shape is not None and (len(image_shape) != 3 or min(image_shape) < 1):
            raise ConfigError(
                f"image_shape (--image-shape) must be (channels, y, x) with positive sizes, got {tuple(image_shape)}"
            )
        if dtype is not None:
            try:
                dtype = str(np.dtype(dtype))
            except TypeError as err:
                raise ConfigError(
                    f"dtype (--image-dtype): {dtype!r} is not a numpy dtype name (uint8, uint16, float32, ...)"
                ) from err
        if not max_image_gib > 0:
            raise ConfigError(f"max_image_gib (--max-image-gib) must be > 0, got {max_image_gib}")
        if not 0 <= max_nonfinite_fraction <= 1:
            raise ConfigError(f"max_nonfinite_fraction must be between 0 and 1, got {max_nonfinite_fraction}")
        super().__init__(
            input_pattern=input_pattern or DEFAULT_PATTERNS.get(scheme, "*.tiff"),
            output_ext=output_ext,
            output_key=list(mapped.values()),
            identifier=identifier,
            input_folder=input_folder,
        )
        self.channels = mapped
        self.scheme = scheme
        # Harmony and OME-TIFF plates are always grouped per field, by their metadata (readers.group_inputs).
        self.group_by = scheme if one_file_per_channel or scheme in ("harmony", "ome-tiff") else None
        self.colors = {**DEFAULT_COLORS, **(colors or {})}
        self._regex = _name_regex(scheme)
        self._plate: PlateMetadata | None = None  # read in the driver (layout), then pickled to the workers
        # Validation limits, not parameters: a change re-checks the invalid files, not the imported ones.
        self._image_shape = tuple(int(n) for n in image_shape) if image_shape is not None else None
        self._dtype = dtype
        self._max_bytes = float(max_image_gib) * GIB
        self._max_nonfinite = float(max_nonfinite_fraction)

    def __getstate__(self) -> dict:
        state = dict(vars(self))
        state.pop("_regex", None)  # compiled again in the worker
        return state

    def __setstate__(self, state: dict) -> None:
        vars(self).update(state)
        self._regex = _name_regex(self.scheme)

    # ---------------------------------------------------------------- metadata
    def layout(self, folder, input_folder=None, run_kwargs=None):
        """Read the plate metadata of the input folder (a metadata scheme), then lay the job out."""
        if self.scheme in METADATA_FORMATS:
            source = os.path.abspath(self.input_folder or input_folder or folder)
            self._plate = read_plate_metadata(source, self.scheme) if os.path.isdir(source) else None
        return super().layout(folder, input_folder, run_kwargs)

    def parameters(self) -> dict:
        # Channel names and pixel size from the metadata change the containers: a change reimports.
        parameters = super().parameters()
        if self._plate is not None:
            parameters["plate_metadata"] = self._plate.essentials()
        return parameters

    def _raw_id(self, raw: str) -> str:
        """The id in the file names of a mapped raw channel (its metadata name or id)."""
        if self._plate is None:
            return raw
        return self._plate.channel_id(raw) or raw

    def _channel_name(self, raw: str) -> str:
        """The raw channel's name as the metadata gives it (the id itself without metadata)."""
        if self._plate is None:
            return raw
        return self._plate.channels.get(self._raw_id(raw), raw)

    def expected_inputs(self) -> int | None:
        """The raw files the plate metadata lists (None without metadata)."""
        return len(self._plate.by_file) if self._plate is not None else None

    def missing_inputs(self, names: list[str]) -> dict[str, str]:
        """Fields the plate metadata lists whose files are not (all) in the input folder, by container name."""
        if self._plate is None:
            return {}
        source = os.path.basename(self._plate.source)
        missing = {}
        for (well, field), files in self._plate.missing_fields(set(names)).items():
            key = self._plate.container(well, field)
            if files:
                shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
                missing[key] = f"well {well}, field {field} is listed in {source}, but {shown} not on disk"
            else:
                missing[key] = f"well {well}, field {field} is selected in {source}, but no image file of it is there"
        return missing

    # ---------------------------------------------------------------- checks
    def check_layout(self, layout) -> None:
        """Refuse a channel mapping that no raw file can satisfy, before the plate is touched.

        Only the file names are read (the scheme's ``channel`` group); with
        one file per channel the check is left out, since a site's channels
        may arrive one after the other.
        """
        super().check_layout(layout)
        if self._plate is not None and not self.group_by:
            raise ConfigError(
                f"{self._plate.source} describes one file per channel: import it with one_file_per_channel=True "
                "(--one-file-per-channel)"
            )
        if self._plate is not None:
            unknown = [raw for raw in self.channels if self._plate.channel_id(raw) is None]
            if unknown:
                listed = ", ".join(f"{i}: {n}" for i, n in self._plate.channels.items())
                raise ConfigError(
                    f"channels (--channels) maps {', '.join(unknown)}, but {self._plate.source} lists the channels "
                    f"{listed}; map those names (or ids)"
                )
            return
        if self.group_by or "channel" not in self._regex.groupindex:
            return
        from ..scan import match

        try:
            names = match(os.listdir(layout.input_folder), layout.input_pattern)
        except OSError:
            return  # the workflow reports a missing input folder
        found: set[str] = set()
        for name in names:
            parsed = self._regex.search(name)
            if parsed and parsed["channel"]:
                found.update(parsed["channel"].split(","))
        missing = [raw for raw in self.channels if raw not in found]
        if found and missing:
            raise ConfigError(
                f"channels (--channels) maps {', '.join(missing)}, but no raw file in {layout.input_folder} has "
                f"{'it' if len(missing) == 1 else 'them'}; the files have channels {', '.join(sorted(found))}"
            )

    def input_facts(self, path: str) -> dict:
        """Well, site, channel names, shape and dtype of a raw file (header only)."""
        name = os.path.basename(path)
        if self._plate is not None:
            return self._listed_facts(path)
        try:
            parsed = parse_image_name(name, self._regex)
        except ConfigError:
            return {}  # not part of the plate: it does not count for the reference
        facts: dict = {"well": parsed.well.name, "site": parsed.site}
        if self.group_by:
            facts["channel"] = parsed.channel
            match = self._regex.search(name)
            if "plane" in self._regex.groupindex and match["plane"]:
                facts["plane"] = int(match["plane"])  # the z planes of a channel are one image together
        try:
            shape, dtype = tiff_header(path)
        except InvalidInputError:
            return facts  # its own validation says what is wrong with it
        facts.update(shape=list(shape), dtype=dtype)
        if not self.group_by:
            facts["channels"] = raw_channel_names(name, self._regex, shape[0])
        return facts

    def plate_problems(self, facts: dict[str, dict], kept: set[str]) -> dict[str, str]:
        """Files unlike the plate's reference, and second files for the same well and site."""
        images = {name: f for name, f in facts.items() if "shape" in f and self._size_ok(f["shape"], f["dtype"])}
        problems = {}
        if self._declared_reference() is not None:
            for name, f in images.items():
                if not self._declared_matches(f):
                    problems[name] = self._mismatch(name, f, self._declared_reference(), 0, 0, {})
        elif images:
            reference = plate_reference(images)
            sharing = [f for _, f in sorted(images.items()) if reference_key(f) == reference]
            for name, f in images.items():
                if reference_key(f) != reference:
                    problems[name] = self._mismatch(name, f, reference, len(sharing), len(images), sharing[0])
        by_site: dict[tuple, list[str]] = {}
        for name in sorted(images, key=lambda n: (n not in kept, n)):
            if name not in problems:
                f = images[name]
                by_site.setdefault((f["well"], f["site"], f.get("channel"), f.get("plane")), []).append(name)
        for (well, site, channel, plane), names in by_site.items():
            what = f"well {well}, site {site}" + (f", channel {channel}" if channel else "")
            what += f", plane {plane}" if plane is not None else ""
            for name in names[1:]:
                problems[name] = (
                    f"{name} is a second file for {what}: {names[0]} is imported; remove one of them "
                    "(checked again on every run)"
                )
        return problems

    def _declared_reference(self) -> tuple | None:
        if self._image_shape is None and self._dtype is None:
            return None
        return self._image_shape, self._dtype, None

    def _mismatch(self, name: str, facts: dict, reference: tuple, sharing: int, total: int, example: dict) -> str:
        """Words for how an image differs from the plate's reference (only what differs)."""
        shape, dtype, channels = reference
        found, wanted = [], []
        if shape is not None and tuple(facts["shape"]) != shape:
            found.append(f"shape {tuple(facts['shape'])}")
            wanted.append(f"shape {shape}")
        if dtype is not None and facts["dtype"] != dtype:
            found.append(f"dtype {facts['dtype']}")
            wanted.append(f"dtype {dtype}")
        if channels is not None and tuple(sorted(facts.get("channels", ()))) != channels:
            found.append(f"channels {list_names(facts['channels'])}")
            wanted.append(f"channels {list_names(example.get('channels', channels))}")
        if self._declared_reference() is not None:
            return f"{name} has {', '.join(found)}, but the plate's images are declared to have {', '.join(wanted)}"
        return (
            f"{name} has {', '.join(found)}, but {sharing} of the plate's {total} images have {', '.join(wanted)} "
            "(checked again on every run; declare the plate's shape and dtype if most files are wrong)"
        )

    def _declared_matches(self, facts: dict) -> bool:
        shape, dtype, _ = self._declared_reference()
        return (shape is None or tuple(facts["shape"]) == shape) and (dtype is None or facts["dtype"] == dtype)

    def _size_ok(self, shape: Sequence[int], dtype: str) -> bool:
        return int(np.prod(shape)) * np.dtype(dtype).itemsize <= self._max_bytes

    def validate_input(self, path: str) -> str | None:
        name = os.path.basename(path)
        if self._plate is not None:
            if name not in self._plate.by_file:
                return f"{name} is not listed in {os.path.basename(self._plate.source)}, the plate's metadata"
            shape, dtype = tiff_header(path, first_page=True)
            self._check_size(name, shape, dtype)
            return None
        try:
            parse_image_name(name, self._regex)
        except ConfigError as err:
            return str(err)
        shape, dtype = tiff_header(path)
        self._check_size(name, shape, dtype)
        raw_names = raw_channel_names(name, self._regex, shape[0])
        missing = [raw for raw in self.channels if raw not in raw_names]
        if missing and not self.group_by:
            return f"{name} has channels {list_names(raw_names)}; missing {', '.join(missing)}"
        return None

    # ---------------------------------------------------------------- work
    def _read(self, path: str) -> np.ndarray:
        """The pixels of a raw file as (channels, y, x); raw-file trouble is an InvalidInputError."""
        shape, dtype = tiff_header(path)
        if not self._size_ok(shape, dtype):  # the file changed since it was validated
            raise InvalidInputError(f"{os.path.basename(path)} claims {describe_size(shape, dtype)}", recheck=True)
        try:
            image = read_tiff(path)
        except OSError as err:
            if resource_error(err) is not None:
                raise
            raise input_error(err, path) from err
        except Exception as err:  # cut short, corrupt compression: the file's fault, not ours
            if "imagecodecs" in str(err):  # a compression this installation cannot decode
                raise InvalidInputError(
                    f"{os.path.basename(path)} is compressed with a codec that is not installed ({err}); "
                    "install or update imagecodecs (pip install -U imagecodecs) and run again"
                ) from err
            raise InvalidInputError(
                f"{os.path.basename(path)} cannot be read (cut short or corrupt?): {type(err).__name__}: {err}"
            ) from err
        return image.reshape(shape)

    def _checked_channels(self, name: str, planes: dict[str, np.ndarray]) -> int:
        """Count the non-finite pixels of an image's channels; refuse a mostly non-finite image.

        Warns (naming the file) about non-finite pixels and constant channels.
        """
        nonfinite = 0
        if any(p.dtype.kind == "f" for p in planes.values()):
            nonfinite = sum(int(p.size - np.count_nonzero(np.isfinite(p))) for p in planes.values())
        total = sum(p.size for p in planes.values())
        if nonfinite > self._max_nonfinite * total:
            raise InvalidInputError(
                f"{name}: {nonfinite} of its {total} pixels ({nonfinite / total:.0%}) are NaN or infinite, "
                f"more than max_nonfinite_fraction={self._max_nonfinite:g}",
                recheck=True,
            )
        if nonfinite:
            warnings.warn(
                f"{name}: {nonfinite} of {total} pixels are NaN or infinite; they are left out of contrast "
                "limits, normalisation, thresholds and features",
                stacklevel=2,
            )
        for channel, plane in planes.items():
            finite = plane[np.isfinite(plane)] if plane.dtype.kind == "f" else plane
            if finite.size and finite.min() == finite.max():
                warnings.warn(
                    f"{name}: channel {channel} is constant (every pixel {finite.flat[0]}); no objects will be found",
                    stacklevel=2,
                )
        return nonfinite

    def run(self, input_files, output_files, **kwargs):
        if self.group_by:
            for files, out in zip(input_files, output_files):
                self._import_site(files, out)
            return
        for inp, out in zip(input_files, output_files):
            name = os.path.basename(inp)
            image = self._read(inp)
            raw_names = raw_channel_names(name, self._regex, image.shape[0])
            parsed = parse_image_name(name, self._regex)
            planes = {channel: image[raw_names.index(raw)] for raw, channel in self.channels.items()}
            self._write(out, planes, self._checked_channels(name, planes), parsed)

    def _write(self, out: str, planes: dict[str, np.ndarray], nonfinite: int, parsed) -> None:
        # A fresh container: an import means the raw image changed, so
        # everything derived from it is stale anyway.
        raw_of = {channel: self._channel_name(raw) for raw, channel in self.channels.items()}
        with open_file(out, "w") as f:
            for channel, data in planes.items():
                color = self.colors.get(channel, "White")
                write_image(f, channel, data, color=color, channel_information=raw_of[channel])
            set_image_info(f, image_information=parsed.site_name, well_information=parsed.well.name)
            f.attrs[NONFINITE_ATTR] = nonfinite
            if self._plate is not None and self._plate.pixel_size_um:
                f.attrs[PIXEL_SIZE_ATTR] = float(self._plate.pixel_size_um)

    def _check_size(self, name: str, shape: Sequence[int], dtype: str) -> None:
        if not self._size_ok(shape, dtype):
            raise InvalidInputError(
                f"{name} claims an image of {describe_size(shape, dtype)}, more than the limit of "
                f"{self._max_bytes / GIB:g} GiB (max_image_gib); it was not read",
                recheck=True,
            )

    def _import_site(self, files: list[str], out: str) -> None:
        """One container from the one-channel files of a site; several z planes of a channel: their maximum."""
        if self._plate is not None:
            self._import_listed_site(files, out)
            return
        by_channel: dict[str, list[str]] = {}
        for path in files:
            match = self._regex.search(os.path.basename(path))
            by_channel.setdefault(match["channel"] or "1", []).append(path)  # ImageXpress: no _w for one wavelength
        missing = [raw for raw in self.channels if self._raw_id(raw) not in by_channel]
        if missing:
            raise InvalidInputError(
                f"{os.path.basename(out)}: no raw file for channel(s) {', '.join(missing)} "
                f"(found {', '.join(sorted(by_channel))}; the site is imported once they are there)"
            )
        parsed = parse_image_name(os.path.basename(files[0]), self._regex)
        planes = {channel: self._projected(by_channel[self._raw_id(raw)]) for raw, channel in self.channels.items()}
        self._write(out, planes, self._checked_channels(os.path.basename(out), planes), parsed)

    def _projected(self, paths: list[str]) -> np.ndarray:
        """One channel of a site: its only plane, or the maximum over its z planes (one file each)."""
        planes = [self._read(path)[0] for path in sorted(paths)]
        return planes[0] if len(planes) == 1 else np.max(planes, axis=0)

    # ---------------------------------------------------------------- with plate metadata
    def _listed_facts(self, path: str) -> dict:
        records = self._plate.by_file.get(os.path.basename(path))
        if not records:
            return {}  # not part of the plate: it does not count for the reference
        first = records[0]
        facts: dict = {"well": first.well, "site": first.field, "channel": first.channel_id, "plane": first.plane}
        try:
            shape, dtype = tiff_header(path, first_page=True)
        except InvalidInputError:
            return facts
        facts.update(shape=list(shape), dtype=dtype)
        return facts

    def _import_listed_site(self, files: list[str], out: str) -> None:
        """One container from the files the metadata lists for a field: each mapped channel's planes, their maximum."""
        listed, folder = self._plate.by_file, os.path.dirname(files[0])
        records = [r for path in files for r in listed.get(os.path.basename(path), [])]
        well, field = records[0].well, records[0].field
        wanted = {self._raw_id(raw) for raw in self.channels}
        present = {os.path.basename(path) for path in files}
        absent = sorted({r.file for r in self._plate.by_field[(well, field)] if r.channel_id in wanted} - present)
        if absent:
            raise InvalidInputError(
                f"{os.path.basename(out)}: {len(absent)} file(s) {os.path.basename(self._plate.source)} lists for it "
                f"are not there ({', '.join(absent[:3])}); the site is imported once they are"
            )
        first_time = min(r.timepoint for r in records)
        if any(r.timepoint != first_time for r in records):
            warnings.warn(
                f"{os.path.basename(out)}: a time series; only time point {first_time} is imported", stacklevel=2
            )
        planes = {}
        for raw, channel in self.channels.items():
            chosen = [r for r in records if r.channel_id == self._raw_id(raw) and r.timepoint == first_time]
            pages = [self._read_page(os.path.join(folder, r.file), r.index) for r in chosen]
            planes[channel] = pages[0] if len(pages) == 1 else np.max(pages, axis=0)
        parsed = ImageName(parse_well(well), field, None, self._plate.plate)
        self._write(out, planes, self._checked_channels(os.path.basename(out), planes), parsed)

    def _read_page(self, path: str, index: int) -> np.ndarray:
        """Page (IFD) ``index`` of a TIFF; raw-file trouble is an InvalidInputError."""
        import tifffile

        name = os.path.basename(path)
        try:
            with tifffile.TiffFile(path) as tif:
                if index >= len(tif.pages):
                    raise InvalidInputError(
                        f"{name} has {len(tif.pages)} page(s); the plate metadata needs page {index}"
                    )
                page = tif.pages[index]
                self._check_size(name, (1, *page.shape[-2:]), str(page.dtype))
                return page.asarray()
        except InvalidInputError:
            raise
        except OSError as err:
            if resource_error(err) is not None:
                raise
            raise input_error(err, path) from err
        except Exception as err:
            raise InvalidInputError(
                f"{name} cannot be read (cut short or corrupt?): {type(err).__name__}: {err}"
            ) from err


def _name_regex(scheme: str):
    """The file-name regular expression of a scheme or metadata format (None: the names say nothing)."""
    names = METADATA_FORMATS.get(scheme, scheme)
    return compile_scheme(names) if names else None
