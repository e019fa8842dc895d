"""Import raw TIFFs into one container per image, a multiscale image per channel."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import numpy as np

from ..base import BatchJobOnContainer
from ..errors import ConfigError
from ..io import open_file, set_image_info, write_image
from ..plate import compile_scheme, parse_image_name

#: Viewer colours for common semantic channel names.
DEFAULT_COLORS = {"nuclei": "Blue", "cells": "Gray", "marker": "Green", "serum": "Green"}


def raw_channel_names(file_name: str, regex: re.Pattern, n_channels: int) -> list[str]:
    """Channel names of a multi-channel file: from the ``channel`` group, split at commas.

    Examples
    --------
    >>> from batchlib.plate import compile_scheme
    >>> raw_channel_names("WellC01_PointC01_0000_ChannelDAPI,WF_GFP,TRITC_Seq0001.tiff", compile_scheme("batchlib"), 3)
    ['DAPI', 'WF_GFP', 'TRITC']
    >>> raw_channel_names("x.tif", compile_scheme(r"(?P<well>x)(?P<site>)"), 2)
    ['channel0', 'channel1']
    """
    match = regex.search(file_name)
    names = match["channel"].split(",") if match and "channel" in regex.groupindex and match["channel"] else []
    if len(names) != n_channels:
        names = [f"channel{i}" for i in range(n_channels)]
    return names


class ImportImages(BatchJobOnContainer):
    """Raw multi-channel TIFFs -> ``<name>.h5`` with one multiscale image per channel.

    Parameters
    ----------
    channels : dict
        Raw channel name -> name in the container (``{"DAPI": "nuclei"}``);
        raw channels mapped to None or missing from the mapping are dropped.
    input_pattern : str
        Glob of the raw files.
    output_ext : str
        Container type: ``.h5`` (default), ``.n5`` or ``.zarr``.
    scheme : str
        Filename scheme (name in :data:`batchlib.plate.FILENAME_SCHEMES` or a
        regular expression) giving well, site and channel names.
    colors : dict, optional
        Viewer colour per container channel name.
    one_file_per_channel : bool
        Raw files hold one channel each (Operetta, ImageXpress): the files of
        a site are imported together into one container named
        ``Well<W>_Point<W>_<site>_<plate>`` (the plate viewer's naming, so the
        jobs after the import use ``scheme="viewer"``); the raw channel name
        is the scheme's ``channel`` group (``"1"`` for ``ch1`` / ``w1``).
    input_folder, identifier
        As for every job.

    Notes
    -----
    A file that is not a readable TIFF, does not match the scheme, lacks a
    mapped channel, or whose shape or dtype differs from the plate's (the
    first readable file of the folder, in name order) is an invalid input,
    recorded with the reason. The output keys are the container channel
    names, stamped so later jobs rerun when an image is imported again.
    """

    def __init__(
        self,
        channels: Mapping[str, str | None],
        input_pattern: str = "*.tiff",
        output_ext: str = ".h5",
        scheme: str = "batchlib",
        colors: Mapping[str, str] | None = None,
        one_file_per_channel: bool = False,
        input_folder: str | os.PathLike | None = None,
        identifier: str | None = None,
    ):
        mapped = {raw: name for raw, name in channels.items() if name}
        if not mapped:
            raise ConfigError("channels: map at least one raw channel to a name, e.g. {'DAPI': 'nuclei'}")
        if len(set(mapped.values())) != len(mapped):
            raise ConfigError(f"channels: two raw channels map to the same name in {dict(channels)}")
        super().__init__(
            input_pattern=input_pattern,
            output_ext=output_ext,
            output_key=list(mapped.values()),
            identifier=identifier,
            input_folder=input_folder,
        )
        self.channels = mapped
        self.scheme = scheme
        self.group_by = scheme if one_file_per_channel else None
        self.colors = {**DEFAULT_COLORS, **(colors or {})}
        self._regex = compile_scheme(scheme)

    def __getstate__(self) -> dict:
        state = dict(vars(self))
        state.pop("_regex", None)  # compiled again in the worker
        return state

    def __setstate__(self, state: dict) -> None:
        vars(self).update(state)
        self._regex = compile_scheme(self.scheme)

    # ---------------------------------------------------------------- checks
    def _read(self, path: str) -> np.ndarray:
        import tifffile

        image = tifffile.imread(path)
        if image.ndim == 2:
            image = image[None]
        if image.ndim != 3:
            raise ValueError(f"expected a (channels, y, x) image, found shape {image.shape}")
        return image

    def _reference(self, folder: str) -> tuple[tuple[int, ...], str] | None:
        """Shape and dtype of the plate: those of its first readable raw file."""
        import tifffile

        from ..planning import match

        def find():
            for name in sorted(match(os.listdir(folder), self.input_pattern)):
                try:
                    with tifffile.TiffFile(os.path.join(folder, name)) as tif:
                        series = tif.series[0]
                        shape = tuple(series.shape) if len(series.shape) == 3 else (1, *series.shape)
                        return shape, str(series.dtype)
                except Exception:
                    continue
            return None

        return self.worker_resource(f"reference:{folder}", find)

    def validate_input(self, path: str) -> str | None:
        import tifffile

        name = os.path.basename(path)
        try:
            parse_image_name(name, self._regex)
        except ConfigError as err:
            return str(err)
        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                shape = tuple(series.shape) if len(series.shape) == 3 else (1, *series.shape)
                dtype = str(series.dtype)
        except Exception as err:
            return f"{name} is not a readable TIFF: {type(err).__name__}: {err}"
        raw_names = raw_channel_names(name, self._regex, shape[0])
        missing = [raw for raw in self.channels if raw not in raw_names]
        if missing and not self.group_by:
            return f"{name} has channels {', '.join(raw_names)}; missing {', '.join(missing)}"
        reference = self._reference(os.path.dirname(path))
        if reference is not None and (shape, dtype) != reference:
            return (
                f"{name} has shape {shape} and dtype {dtype}, but the plate's images have shape "
                f"{reference[0]} and dtype {reference[1]}"
            )
        return None

    # ---------------------------------------------------------------- work
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
            # A fresh container: an import means the raw image changed, so
            # everything derived from it is stale anyway.
            with open_file(out, "w") as f:
                for raw, channel in self.channels.items():
                    data = image[raw_names.index(raw)]
                    write_image(f, channel, data, color=self.colors.get(channel, "White"), channel_information=raw)
                set_image_info(f, image_information=parsed.site_name, well_information=parsed.well.name)

    def _import_site(self, files: list[str], out: str) -> None:
        """One container from the one-channel files of a site."""
        by_channel = {}
        for path in files:
            match = self._regex.search(os.path.basename(path))
            by_channel[match["channel"]] = path
        missing = [raw for raw in self.channels if raw not in by_channel]
        if missing:
            raise ValueError(
                f"{os.path.basename(out)}: no raw file for channel(s) {', '.join(missing)} "
                f"(found {', '.join(sorted(by_channel))})"
            )
        parsed = parse_image_name(os.path.basename(files[0]), self._regex)
        with open_file(out, "w") as f:
            for raw, channel in self.channels.items():
                write_image(
                    f,
                    channel,
                    self._read(by_channel[raw])[0],
                    color=self.colors.get(channel, "White"),
                    channel_information=raw,
                )
            set_image_info(f, image_information=parsed.site_name, well_information=parsed.well.name)
