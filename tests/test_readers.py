"""Plate metadata readers (Harmony index, ImageXpress HTD), each format written here from its description."""

import numpy as np
import pytest
import tifffile

from batchlib.errors import ConfigError
from batchlib.readers import detect_format, read_harmony, read_imagexpress

V5 = "http://www.perkinelmer.com/PEHH/HarmonyV5"
V6 = "http://www.perkinelmer.com/PEHH/HarmonyV6"
CHANNELS = {"1": "HOECHST 33342", "2": "Alexa 488"}


def harmony_name(row: int, col: int, field: int, plane: int, channel: str) -> str:
    return f"r{row:02d}c{col:02d}f{field:02d}p{plane:02d}-ch{channel}sk1fk1fl1.tiff"


def write_harmony_index(
    folder, images, names_in_maps: bool = False, pixel_m: float = 6.5e-7, drop: str = "", channels=CHANNELS
):
    """An index as Harmony exports it: V5 with names per Image, or V6 (Index.xml) with names in Maps/Map/Entry.

    ``images`` are (row, col, field, plane, channel id); ``drop`` leaves that element out of the first Image.
    """
    namespace = V6 if names_in_maps else V5
    parts = [f'<?xml version="1.0" encoding="utf-8"?>\n<EvaluationInputData xmlns="{namespace}" Version="2">']
    parts.append("<Plates><Plate><PlateID>p1</PlateID><PlateRows>16</PlateRows><PlateColumns>24</PlateColumns>")
    parts.append("</Plate></Plates>")
    if names_in_maps:
        parts.append("<Maps><Map>")
        for cid, name in channels.items():
            parts.append(
                f'<Entry ChannelID="{cid}"><ChannelName>{name}</ChannelName>'
                f'<ImageResolutionX Unit="m">{pixel_m}</ImageResolutionX></Entry>'
            )
        parts.append("</Map></Maps>")
    parts.append("<Images>")
    for i, (row, col, field, plane, cid) in enumerate(images):
        elements = {
            "id": f"{row:02d}{col:02d}K1F{field}P{plane}R{cid}",
            "State": "Ok",
            "URL": harmony_name(row, col, field, plane, cid),
            "Row": row,
            "Col": col,
            "FieldID": field,
            "PlaneID": plane,
            "TimepointID": 0,
            "ChannelID": cid,
            "AbsTime": f"2026-11-30T10:{field:02d}:0{plane}.5+01:00",
        }
        if not names_in_maps:
            elements["ChannelName"] = channels[cid]
        body = "".join(f"<{k}>{v}</{k}>" for k, v in elements.items() if not (i == 0 and k == drop))
        if not names_in_maps:
            body += f'<ImageResolutionX Unit="m">{pixel_m}</ImageResolutionX>'
        parts.append(f'<Image Version="1">{body}</Image>')
    parts.append("</Images></EvaluationInputData>")
    name = "Index.xml" if names_in_maps else "Index.idx.xml"
    (folder / name).write_text("\n".join(parts), encoding="utf-8")
    return folder / name


def write_planes(folder, images, shape=(24, 32), seed=0):
    rng = np.random.default_rng(seed)
    pixels = {}
    for row, col, field, plane, cid in images:
        data = rng.integers(0, 4000, shape, dtype=np.uint16)
        name = harmony_name(row, col, field, plane, cid)
        tifffile.imwrite(folder / name, data)
        pixels[name] = data
    return pixels


PLATE = [(r, c, f, p, ch) for r, c in ((2, 3), (3, 5)) for f in (1, 2) for p in (1, 2) for ch in ("1", "2")]


@pytest.mark.parametrize("names_in_maps", [False, True], ids=["Index.idx.xml (V5)", "Index.xml (V6, Maps)"])
def test_harmony_index_gives_wells_fields_channel_names_and_pixel_size(tmp_path, names_in_maps):
    write_harmony_index(tmp_path, PLATE, names_in_maps=names_in_maps, pixel_m=6.5e-7)
    plate = read_harmony(str(tmp_path))
    assert plate.channels == CHANNELS
    assert plate.fields == {("B03", 1), ("B03", 2), ("C05", 1), ("C05", 2)}
    assert plate.pixel_size_um == pytest.approx(0.65)
    record = next(r for r in plate.images if r.file == harmony_name(3, 5, 2, 2, "2"))
    assert record.acquired == "2026-11-30T10:02:02.5+01:00"
    assert (record.well, record.field, record.plane, record.channel, record.channel_id) == (
        "C05",
        2,
        2,
        "Alexa 488",
        "2",
    )
    assert detect_format(str(tmp_path))[0] == "harmony"


def test_harmony_fields_whose_files_are_missing_are_named(tmp_path):
    write_harmony_index(tmp_path, PLATE)
    present = {harmony_name(*image) for image in PLATE} - {harmony_name(3, 5, 2, 1, "1")}
    missing = read_harmony(str(tmp_path)).missing_fields(present)
    assert missing == {("C05", 2): [harmony_name(3, 5, 2, 1, "1")]}


@pytest.mark.parametrize("drop", ["URL", "ChannelID", "FieldID"])
def test_harmony_image_without_a_required_element_names_file_image_and_element(tmp_path, drop):
    index = write_harmony_index(tmp_path, PLATE, drop=drop)
    with pytest.raises(ConfigError, match=rf"Index.idx.xml: Image 0203K1F1P1R1 has no <{drop}>") as err:
        read_harmony(str(tmp_path))
    assert str(index) in str(err.value)


def test_harmony_index_that_is_not_xml_or_not_harmony_is_refused_by_name(tmp_path):
    (tmp_path / "Index.idx.xml").write_text("<EvaluationInputData><Images>")
    with pytest.raises(ConfigError, match="Index.idx.xml is not readable XML"):
        read_harmony(str(tmp_path))
    (tmp_path / "Index.idx.xml").write_text("<OME/>")
    with pytest.raises(ConfigError, match="root element is 'OME', expected 'EvaluationInputData'"):
        read_harmony(str(tmp_path))


def write_htd(folder, name="Screen1", sites=True, waves=("DAPI", "FITC"), collect=(1, 1)):
    """An ImageXpress .HTD: a 96-well plate with B02 and C07 imaged, 2 x 1 sites, two wavelengths."""
    lines = ['"HTSInfoFile", Version 1.0', '"Description", "test plate"', '"TimePoints", 1', '"ZSeries", FALSE']
    lines += ['"XWells", 12', '"YWells", 8']
    for r in range(8):
        row = ["TRUE" if (r, c) in ((1, 1), (2, 6)) else "FALSE" for c in range(12)]
        lines.append(f'"WellsSelection{r + 1}", ' + ", ".join(row))
    lines.append(f'"Sites", {"TRUE" if sites else "FALSE"}')
    if sites:
        lines += ['"XSites", 2', '"YSites", 1', '"SiteSelection1", TRUE, TRUE']
    lines += ['"Waves", TRUE', f'"NWavelengths", {len(waves)}']
    for n, (wave, c) in enumerate(zip(waves, collect), 1):
        lines += [f'"WaveName{n}", "{wave}"', f'"WaveCollect{n}", {c}']
    lines += ['"UniquePlateIdentifier", "1234-abcd"', '"EndFile"']
    (folder / f"{name}.HTD").write_text("\r\n".join(lines) + "\r\n", encoding="latin-1")


def metamorph_tiff(path, pixel_um=0.65):
    description = (
        '<MetaData><prop id="spatial-calibration-x" type="float" value="'
        f'{pixel_um}"/><prop id="spatial-calibration-units" type="string" value="um"/></MetaData>'
    )
    tifffile.imwrite(path, np.zeros((8, 8), np.uint16), description=description, metadata=None)


def test_htd_gives_selected_wells_sites_and_wavelength_names(tmp_path):
    write_htd(tmp_path)
    for well, site, wave in [("B02", 1, 1), ("B02", 1, 2), ("B02", 2, 1), ("B02", 2, 2), ("C07", 1, 1)]:
        metamorph_tiff(tmp_path / f"Screen1_{well}_s{site}_w{wave}A1B2C3D4-0000.tif")
    metamorph_tiff(tmp_path / "Screen1_B02_s1_w1_thumbA1B2C3D4.tif")  # a thumbnail: not an image of the plate
    plate = read_imagexpress(str(tmp_path))
    assert plate.channels == {"1": "DAPI", "2": "FITC"}
    assert plate.fields == {("B02", 1), ("B02", 2), ("C07", 1), ("C07", 2)}
    assert len(plate.images) == 5 and not any("thumb" in r.file for r in plate.images)
    assert plate.pixel_size_um == pytest.approx(0.65)
    files = plate.files()
    assert plate.missing_fields(files) == {("C07", 2): []}
    assert detect_format(str(tmp_path)) == ("imagexpress", "ImageXpress plate description Screen1.HTD")


def test_htd_without_sites_and_with_an_uncollected_wave(tmp_path):
    write_htd(tmp_path, sites=False, waves=("DAPI", "FITC", "Cy5"), collect=(1, 0, 1))
    metamorph_tiff(tmp_path / "Screen1_B02_w1.tif")
    metamorph_tiff(tmp_path / "Screen1_B02_w3.tif")
    metamorph_tiff(tmp_path / "Screen1_B02_w2.tif")  # not collected by the HTD: ignored
    plate = read_imagexpress(str(tmp_path))
    assert plate.channels == {"1": "DAPI", "3": "Cy5"}
    assert sorted((r.well, r.field, r.channel) for r in plate.images) == [("B02", 1, "Cy5"), ("B02", 1, "DAPI")]
    assert plate.fields == {("B02", 1), ("C07", 1)}


def test_htd_with_a_wrong_line_names_file_and_key(tmp_path):
    write_htd(tmp_path)
    path = tmp_path / "Screen1.HTD"
    path.write_text(path.read_text(encoding="latin-1").replace('"XWells", 12', '"XWells", twelve'), encoding="latin-1")
    with pytest.raises(ConfigError, match=r'Screen1.HTD: "XWells" should be a number'):
        read_imagexpress(str(tmp_path))
    path.write_text('"HTSInfoFile", Version 1.0\n"EndFile"\n')
    with pytest.raises(ConfigError, match="is not an ImageXpress plate description"):
        read_imagexpress(str(tmp_path))


def test_detect_format_falls_back_to_name_schemes_and_says_what_it_tried(tmp_path):
    for name in ("r01c01f01p01-ch1sk1fk1fl1.tiff", "r01c01f01p01-ch2sk1fk1fl1.tiff"):
        tifffile.imwrite(tmp_path / name, np.zeros((4, 4), np.uint8))
    assert detect_format(str(tmp_path))[0] == "operetta"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="Harmony index.*HTD.*give --scheme"):
        detect_format(str(empty))


OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"


def ome_plate_xml(fields, pixel_um=0.325, broken_ref=False):
    """OME-XML of a plate: ``fields`` are (row, column, index, file); each image 2 channels in one file."""
    wells: dict = {}
    for i, (row, column, index, _) in enumerate(fields):
        wells.setdefault((row, column), []).append((index, i))
    parts = [f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{OME_NS}">']
    parts.append('<Plate ID="Plate:0" Name="P" Rows="8" Columns="12">')
    for w, ((row, column), samples) in enumerate(wells.items()):
        parts.append(f'<Well ID="Well:{w}" Row="{row}" Column="{column}">')
        for index, i in samples:
            ref = 99 if broken_ref else i
            parts.append(f'<WellSample ID="WellSample:{i}" Index="{index}"><ImageRef ID="Image:{ref}"/></WellSample>')
        parts.append("</Well>")
    parts.append("</Plate>")
    for i, (_, _, _, file) in enumerate(fields):
        parts.append(
            f'<Image ID="Image:{i}"><AcquisitionDate>2026-11-30T09:00:0{i}</AcquisitionDate>'
            f'<Pixels ID="Pixels:{i}" DimensionOrder="XYCZT" Type="uint16" SizeX="32" '
            f'SizeY="24" SizeC="2" SizeZ="1" SizeT="1" PhysicalSizeX="{pixel_um}" PhysicalSizeXUnit="µm">'
            f'<Channel ID="Channel:{i}:0" Name="DAPI"/><Channel ID="Channel:{i}:1" Name="GFP"/>'
            f'<TiffData IFD="0" PlaneCount="2"><UUID FileName="{file}">urn:uuid:{i}</UUID></TiffData>'
            "</Pixels></Image>"
        )
    parts.append("</OME>")
    return "".join(parts)


OME_FIELDS = [(1, 1, 0, "B02_f0.ome.tif"), (1, 1, 1, "B02_f1.ome.tif"), (2, 6, 0, "C07_f0.ome.tif")]


def write_ome_plate(folder, fields=OME_FIELDS, **kwargs):
    """Each field's file carries the whole plate's OME-XML (as multi-file OME-TIFF writers do)."""
    xml = ome_plate_xml(fields, **kwargs)
    rng = np.random.default_rng(1)
    pixels = {}
    for *_, file in fields:
        data = rng.integers(0, 4000, (2, 24, 32), dtype=np.uint16)
        tifffile.imwrite(folder / file, data, description=xml.encode("utf-8"), metadata=None)  # OME-XML is UTF-8
        pixels[file] = data
    return pixels


def test_ome_tiff_plate_gives_wells_fields_channels_and_pages(tmp_path):
    from batchlib.readers import read_ome_tiff

    write_ome_plate(tmp_path)
    plate = read_ome_tiff(str(tmp_path))
    assert plate.channels == {"0": "DAPI", "1": "GFP"}
    assert plate.fields == {("B02", 0), ("B02", 1), ("C07", 0)}  # Row/Column 0-based, WellSample Index as is
    assert plate.pixel_size_um == pytest.approx(0.325)
    assert sorted((r.file, r.index, r.channel) for r in plate.images if r.well == "C07") == [
        ("C07_f0.ome.tif", 0, "DAPI"),
        ("C07_f0.ome.tif", 1, "GFP"),
    ]
    assert len(plate.images) == 6  # each file repeats the plate's XML: records are kept once
    assert {r.acquired for r in plate.images if r.well == "C07"} == {"2026-11-30T09:00:02"}
    assert detect_format(str(tmp_path))[0] == "ome-tiff"


def test_ome_tiff_without_plate_or_with_a_dangling_reference_is_refused_by_name(tmp_path):
    from batchlib.readers import read_ome_tiff

    write_ome_plate(tmp_path, broken_ref=True)
    with pytest.raises(ConfigError, match="B02_f0.ome.tif: WellSample WellSample:0 refers to Image Image:99"):
        read_ome_tiff(str(tmp_path))
    for file in tmp_path.iterdir():
        file.unlink()
    tifffile.imwrite(tmp_path / "single.ome.tif", np.zeros((2, 8, 8), np.uint16), metadata={"axes": "CYX"})
    with pytest.raises(ConfigError, match="has a Plate element"):
        read_ome_tiff(str(tmp_path))
