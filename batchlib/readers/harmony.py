"""Harmony (Revvity/PerkinElmer Opera Phenix, Operetta CLS): the ``Index.idx.xml`` / ``Index.xml`` of an export.

What this reader relies on:

- the root element ``EvaluationInputData`` in a namespace that names the
  Harmony version (``http://www.perkinelmer.com/PEHH/HarmonyV5``, ``...V6``);
  tags are matched without their namespace, so every version reads the same;
- ``Images/Image``: one element per image file, with children ``id``,
  ``URL`` (the file name, relative to the index), ``Row`` and ``Col``
  (1-based), ``FieldID``, ``PlaneID``, ``TimepointID``, ``ChannelID``,
  ``ChannelName``, ``ImageResolutionX`` with a ``Unit`` attribute (``m``),
  ``AbsTime`` (ISO 8601 with its offset);
- ``Maps/Map/Entry`` elements with a ``ChannelID`` attribute: in newer
  exports (``Index.xml``) the channel's ``ChannelName`` and
  ``ImageResolutionX`` are there rather than in each ``Image``;
- ``Wells/Well`` with ``Row``, ``Col`` and ``Image id="..."`` references:
  the fields the experiment imaged, whether or not their files were exported;
- file names ``r<row>c<col>f<field>p<plane>-ch<channel>sk<t>fk1fl1.tiff``
  (the ``operetta`` scheme), one plane of one channel each.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET

from ..errors import ConfigError
from ..plate import Well
from .records import ImageRecord, PlateMetadata

#: Index file names of a Harmony export, newest first.
INDEX_FILES = ("Index.xml", "Index.idx.xml", "Index.ref.xml")
_METRES = {"m": 1e6, "um": 1.0, "µm": 1.0, "nm": 1e-3, "mm": 1e3}


def find_index(folder: str) -> str | None:
    """The Harmony index file in ``folder``, None if there is none."""
    for name in INDEX_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _micrometres(element: ET.Element | None) -> float | None:
    if element is None or not (element.text or "").strip():
        return None
    factor = _METRES.get(element.get("Unit", "m"))
    try:
        value = float(element.text) * factor if factor else None
    except ValueError:
        return None
    return value if value and math.isfinite(value) and value > 0 else None


def read_harmony(folder: str, index: str | None = None) -> PlateMetadata:
    """The images, channels and fields a Harmony index lists.

    Parameters
    ----------
    folder : str
        The export folder (the images and the index).
    index : str, optional
        The index file (default: :func:`find_index`).

    Raises
    ------
    ConfigError
        No index, XML that does not parse, or an ``Image`` lacking a required
        element (the message names the file, the image id and the element).
    """
    index = index or find_index(folder)
    if index is None:
        raise ConfigError(f"no Harmony index ({' or '.join(INDEX_FILES)}) in {folder}")
    try:
        root = ET.parse(index).getroot()
    except ET.ParseError as err:
        raise ConfigError(f"{index} is not readable XML: {err}") from err
    if _local(root.tag) != "EvaluationInputData":
        raise ConfigError(f"{index}: root element is {_local(root.tag)!r}, expected 'EvaluationInputData' (Harmony)")
    children = {_local(c.tag): c for c in root}
    map_names: dict[str, str] = {}
    map_sizes: dict[str, float] = {}
    for entry in children.get("Maps", ET.Element("Maps")).iter():
        if _local(entry.tag) == "Entry" and entry.get("ChannelID"):
            fields = {_local(c.tag): c for c in entry}
            if "ChannelName" in fields and fields["ChannelName"].text:
                map_names[entry.get("ChannelID")] = fields["ChannelName"].text.strip()
            size = _micrometres(fields.get("ImageResolutionX"))
            if size:
                map_sizes[entry.get("ChannelID")] = size
    metadata = PlateMetadata("harmony", index)
    images = children.get("Images")
    for image in images if images is not None else ():
        values = {_local(c.tag): c for c in image}
        image_id = (values["id"].text or "?") if "id" in values else "?"

        def required(name: str, values=values, image_id=image_id) -> str:
            element = values.get(name)
            if element is None or not (element.text or "").strip():
                raise ConfigError(f"{index}: Image {image_id} has no <{name}>; every image needs one")
            return element.text.strip()

        channel_id = required("ChannelID")
        try:
            row, column, field = int(required("Row")), int(required("Col")), int(required("FieldID"))
            plane = int(values["PlaneID"].text) if "PlaneID" in values else 1
            timepoint = int(values["TimepointID"].text) if "TimepointID" in values else 0
        except ValueError as err:
            raise ConfigError(f"{index}: Image {image_id}: {err}") from err
        name_element = values.get("ChannelName")
        channel = (name_element.text or "").strip() if name_element is not None else ""
        channel = channel or map_names.get(channel_id) or channel_id
        metadata.channels.setdefault(channel_id, channel)
        size = _micrometres(values.get("ImageResolutionX")) or map_sizes.get(channel_id)
        acquired = values["AbsTime"].text.strip() if "AbsTime" in values and values["AbsTime"].text else None
        record = ImageRecord(
            required("URL"),
            Well(row - 1, column - 1).name,
            field,
            channel,
            channel_id,
            plane,
            timepoint,
            size,
            acquired=acquired,
        )
        metadata.images.append(record)
        metadata.fields.add((record.well, record.field))
    if not metadata.images:
        raise ConfigError(f"{index} lists no images (no Images/Image elements)")
    metadata.channels = dict(sorted(metadata.channels.items(), key=lambda item: _channel_order(item[0])))
    return metadata


def _channel_order(channel_id: str) -> tuple:
    return (0, int(channel_id), "") if channel_id.isdigit() else (1, 0, channel_id)
