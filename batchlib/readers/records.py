"""What a plate metadata reader returns: one record per image file, and the plate they belong to."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property


@dataclass(frozen=True)
class ImageRecord:
    """One image file (or one channel of it) as a plate's metadata lists it.

    Attributes
    ----------
    file : str
        File name, relative to the folder the metadata describes.
    well : str
        Well name, ``"C01"``.
    field : int
        Field of view (site) in the well, numbered as the metadata does.
    channel : str
        Channel name from the metadata (``"HOECHST 33342"``, ``"DAPI"``).
    channel_id : str
        The channel's id in the file names (Harmony ``ch1``, ImageXpress ``w1``: ``"1"``).
    plane, timepoint : int
        Z plane and time point, as the metadata numbers them.
    pixel_size_um : float or None
        Micrometres per pixel, where the metadata says.
    index : int
        The plane's page (IFD) in the file: 0 for one-plane files.
    acquired : str or None
        When the image was taken (ISO 8601, as the metadata writes it), where it says.
    """

    file: str
    well: str
    field: int
    channel: str
    channel_id: str
    plane: int = 1
    timepoint: int = 0
    pixel_size_um: float | None = None
    index: int = 0
    acquired: str | None = None


@dataclass
class PlateMetadata:
    """A plate folder as its metadata describes it.

    Attributes
    ----------
    format : str
        The reader's name (``"harmony"``, ``"imagexpress"``).
    source : str
        The metadata file read (for messages).
    images : list of ImageRecord
        Every image the metadata lists, whether or not its file exists.
    fields : set of (well, field)
        The fields the metadata says were (to be) imaged: selected in the
        plate layout, or listed with their images.
    channels : dict
        Channel id -> channel name, in acquisition order.
    plate : str or None
        The plate's name in the image file names (ImageXpress: the HTD's), which ends the container names.
    """

    format: str
    source: str
    images: list[ImageRecord] = field(default_factory=list)
    fields: set[tuple[str, int]] = field(default_factory=set)
    channels: dict[str, str] = field(default_factory=dict)
    plate: str | None = None

    @property
    def pixel_size_um(self) -> float | None:
        """The pixel size most of the images have (None if the metadata gives none)."""
        sizes = Counter(r.pixel_size_um for r in self.images if r.pixel_size_um and math.isfinite(r.pixel_size_um))
        return sizes.most_common(1)[0][0] if sizes else None

    def container(self, well: str, field: int) -> str:
        """The name (without extension) of the container of a field."""
        from ..plate import site_container

        return site_container(well, field, self.plate)

    # The indexes below are built on first use, once the reader has filled ``images``.
    @cached_property
    def by_file(self) -> dict[str, list[ImageRecord]]:
        """The records of each listed file."""
        files: dict[str, list[ImageRecord]] = {}
        for record in self.images:
            files.setdefault(record.file, []).append(record)
        return files

    @cached_property
    def by_field(self) -> dict[tuple[str, int], list[ImageRecord]]:
        """The records of each (well, field)."""
        fields: dict[tuple[str, int], list[ImageRecord]] = {}
        for record in self.images:
            fields.setdefault((record.well, record.field), []).append(record)
        return fields

    def groups(self, names) -> dict[str, list[str]]:
        """The present files ``names`` grouped per field, under the field's container name.

        A file the metadata does not list is a group of its own, under its own
        name (the importer finds it invalid). Groups and members in name order.
        """
        by_file = self.by_file
        groups: dict[str, list[str]] = {}
        for name in sorted(names):
            records = by_file.get(name)
            key = self.container(records[0].well, records[0].field) if records else name
            groups.setdefault(key, []).append(name)
        return groups

    def files(self) -> set[str]:
        """The file names the metadata lists."""
        return set(self.by_file)

    def channel_id(self, name: str) -> str | None:
        """The id of a channel given by name or by id (``"DAPI"`` or ``"1"``); None if neither."""
        if name in self.channels:
            return name
        ids = [i for i, n in self.channels.items() if n == name]
        return ids[0] if ids else None

    def missing_fields(self, present: set[str]) -> dict[tuple[str, int], list[str]]:
        """Fields with at least one listed file not in ``present`` (names), with those files."""
        missing: dict[tuple[str, int], list[str]] = {}
        for record in self.images:
            if record.file not in present and record.file not in missing.get((record.well, record.field), ()):
                missing.setdefault((record.well, record.field), []).append(record.file)
        for well_field in self.fields - set(self.by_field):  # selected, but no image listed at all
            missing.setdefault(well_field, [])
        return dict(sorted(missing.items()))

    def essentials(self) -> dict:
        """What of the metadata changes the imported images: channel names and pixel size (a job parameter)."""
        return {"format": self.format, "channels": dict(self.channels), "pixel_size_um": self.pixel_size_um}
