"""OME-TIFF: the OME-XML in each file's first ImageDescription, with its ``Plate`` element.

What this reader relies on (OME schema 2016-06; tags matched without their
namespace, so other schema versions read the same):

- ``Plate/Well`` with ``Row`` and ``Column``, **0-based** (top left is (0, 0));
  ``Well/WellSample`` with ``Index`` (the field; unique per plate, not
  necessarily dense) and a child ``ImageRef ID`` naming an ``Image``;
- ``Image/AcquisitionDate`` (ISO 8601), ``Image/Pixels`` with ``SizeC``, ``DimensionOrder``, ``PhysicalSizeX``
  and ``PhysicalSizeXUnit`` (default ``µm``), ``Channel`` children with a
  ``Name``, and ``TiffData`` children with ``IFD``, ``FirstC``, ``FirstZ``,
  ``FirstT``, ``PlaneCount`` (0-based, defaults 0 and 1 when ``IFD`` is
  given) and an optional ``UUID`` child whose ``FileName`` says which file
  holds those planes (multi-file OME-TIFF; without it, this file);
- ``<TiffData/>`` without attributes: the file's IFDs in ``DimensionOrder``
  (Z, C, T fastest first as the order says), of which only the first time
  point and Z plane are taken here;
- files named ``*.ome.tif`` / ``*.ome.tiff``; each may carry the whole
  plate's XML, so records are kept once per (file, IFD).

tifffile reads the XML (``TiffFile.ome_metadata``) but not the ``Plate``
element, so it is parsed here with ``xml.etree``.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

from ..errors import ConfigError
from ..plate import Well
from .records import ImageRecord, PlateMetadata

_UNITS_UM = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6, "Å": 1e-4}


def ome_files(folder: str) -> list[str]:
    """The OME-TIFF files of ``folder``, by name."""
    return sorted(n for n in os.listdir(folder) if n.lower().endswith((".ome.tif", ".ome.tiff")))


def ome_xml(path: str) -> str | None:
    """The OME-XML of an OME-TIFF (first page's description), None if it has none or is unreadable."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return tif.ome_metadata
    except Exception:  # the file's own validation reports an unreadable TIFF
        return None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in element if _local(c.tag) == name]


def _int(element: ET.Element, name: str, where: str, default: int | None = None) -> int:
    value = element.get(name)
    if value is None:
        if default is None:
            raise ConfigError(f"{where}: <{_local(element.tag)}> has no {name} attribute")
        return default
    try:
        return int(value)
    except ValueError as err:
        raise ConfigError(f"{where}: <{_local(element.tag)}> {name}={value!r} is not a whole number") from err


def _pixel_size(pixels: ET.Element) -> float | None:
    value = pixels.get("PhysicalSizeX")
    factor = _UNITS_UM.get(pixels.get("PhysicalSizeXUnit", "µm"))
    try:
        size = float(value) * factor if value and factor else None
    except ValueError:
        return None
    return size if size and size > 0 else None


def _channel_planes(pixels: ET.Element, file: str) -> list[tuple[str, int, int]]:
    """(file, IFD, channel index) of the first Z plane and time point of each channel."""
    size = {axis: int(pixels.get(f"Size{axis}", "1")) for axis in "ZCT"}
    order = pixels.get("DimensionOrder", "XYZCT")[2:]  # the three plane axes, fastest first
    planes = []
    for tiff in _children(pixels, "TiffData"):
        uuid = _children(tiff, "UUID")
        target = (uuid[0].get("FileName") if uuid else None) or file
        ifd = int(tiff.get("IFD", "0"))
        first = {axis: int(tiff.get(f"First{axis}", "0")) for axis in "ZCT"}
        count = int(
            tiff.get("PlaneCount", "1" if tiff.get("IFD") is not None else str(size["Z"] * size["C"] * size["T"]))
        )
        # The block's planes in DimensionOrder, from its First* position on.
        start = 0
        stride = 1
        for axis in order:
            start += first[axis] * stride
            stride *= size[axis]
        for k in range(count):
            index, position = start + k, {}
            for axis in order:
                position[axis], index = index % size[axis], index // size[axis]
            if position["Z"] == 0 and position["T"] == 0:
                planes.append((os.path.basename(target.replace("\\", "/")), ifd + k, position["C"]))
    return planes


def read_ome_tiff(folder: str) -> PlateMetadata:
    """The plate the OME-XML of the OME-TIFFs in ``folder`` describes: one record per (file, channel plane).

    Raises
    ------
    ConfigError
        No OME-TIFF with a ``Plate`` element, or XML that does not parse
        (the message names the file and the element).
    """
    files = ome_files(folder)
    if not files:
        raise ConfigError(f"no OME-TIFF (*.ome.tif, *.ome.tiff) in {folder}")
    metadata = PlateMetadata("ome-tiff", os.path.join(folder, files[0]))
    seen: set[tuple[str, int]] = set()
    with_plate = 0
    for name in files:
        text = ome_xml(os.path.join(folder, name))
        if not text:
            continue
        try:
            root = ET.fromstring(text)
        except ET.ParseError as err:
            raise ConfigError(f"{name}: its OME-XML does not parse: {err}") from err
        images = {image.get("ID"): image for image in _children(root, "Image")}
        for plate in _children(root, "Plate"):
            with_plate += 1
            for well_element in _children(plate, "Well"):
                row, column = _int(well_element, "Row", name), _int(well_element, "Column", name)
                well = Well(row, column).name
                for sample in _children(well_element, "WellSample"):
                    field = _int(sample, "Index", name)
                    metadata.fields.add((well, field))
                    for ref in _children(sample, "ImageRef"):
                        image = images.get(ref.get("ID"))
                        if image is None:
                            raise ConfigError(
                                f"{name}: WellSample {sample.get('ID')} refers to Image {ref.get('ID')}, "
                                "which the OME-XML does not have"
                            )
                        _add_image(metadata, image, well, field, name, seen)
    if not with_plate:
        raise ConfigError(f"no OME-TIFF in {folder} has a Plate element in its OME-XML (the plate layout)")
    return metadata


def _add_image(metadata: PlateMetadata, image: ET.Element, well: str, field: int, file: str, seen: set) -> None:
    pixels = _children(image, "Pixels")
    if not pixels:
        raise ConfigError(f"{file}: Image {image.get('ID')} has no Pixels element")
    pixels = pixels[0]
    channels = _children(pixels, "Channel")
    names = [c.get("Name") or str(i) for i, c in enumerate(channels)] or ["0"]
    for i, name in enumerate(names):
        metadata.channels.setdefault(str(i), name)
    size = _pixel_size(pixels)
    dates = _children(image, "AcquisitionDate")
    acquired = dates[0].text.strip() if dates and dates[0].text else None
    for target, ifd, c in _channel_planes(pixels, file):
        if (target, ifd) in seen:
            continue
        seen.add((target, ifd))
        name = names[c] if c < len(names) else str(c)
        metadata.images.append(
            ImageRecord(target, well, field, name, str(c), pixel_size_um=size, index=ifd, acquired=acquired)
        )
