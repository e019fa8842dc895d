"""Well and site names, with regular expressions (rows A-P and beyond)."""

import pytest

from batchlib.errors import ConfigError
from batchlib.plate import (
    FILENAME_SCHEMES,
    Well,
    compile_scheme,
    parse_image_name,
    parse_site_name,
    parse_well,
    plate_format,
    row_index,
    row_name,
    site_name,
)


def test_rows_round_trip_up_to_1536_well_plates():
    names = [row_name(i) for i in range(32)]
    assert names[:3] == ["A", "B", "C"] and names[25] == "Z" and names[26:] == ["AA", "AB", "AC", "AD", "AE", "AF"]
    assert [row_index(n) for n in names] == list(range(32))


@pytest.mark.parametrize("row", ["I", "N", "O", "P"])
def test_rows_that_lstrip_point_would_break(row):
    # str.lstrip("Point") strips a set of letters and eats rows I, N, O, P.
    name = parse_image_name(f"Well{row}07_Point{row}07_0002_ChannelDAPI_Seq0001.tiff")
    assert name.well == Well(row_index(row), 6) and name.site == 2 and name.site_name == f"{row}07-0002"


def test_wells_sites_and_formats():
    assert parse_well("p24") == Well(15, 23) and parse_well("AF48").name == "AF48"
    assert site_name("C01", 12) == "C01-0012" and parse_site_name("C01-0012") == (Well(2, 0), 12)
    assert plate_format([parse_well("H12")]) == (8, 12)
    assert plate_format([parse_well("I01")]) == (16, 24)
    assert plate_format([parse_well("AF01")]) == (32, 48)
    for bad in ("", "C", "01", "C00", "C01-x"):
        with pytest.raises(ConfigError):
            parse_site_name(bad) if "-" in bad else parse_well(bad)


def test_schemes():
    assert set(FILENAME_SCHEMES) >= {"batchlib", "operetta", "imagexpress"}
    name = parse_image_name("WellC01_PointC01_0216_ChannelDAPI,WF_GFP,TRITC_Seq0216.tiff")
    assert (name.well.name, name.site, name.channel) == ("C01", 216, "DAPI,WF_GFP,TRITC")
    operetta = parse_image_name("r16c24f09p01-ch3sk1fk1fl1.tiff", "operetta")
    assert (operetta.well.name, operetta.site, operetta.channel) == ("P24", 9, "3")
    xpress = parse_image_name("MyPlate_2_B03_s4_w2.tif", "imagexpress")
    assert (xpress.plate, xpress.well.name, xpress.site, xpress.channel) == ("MyPlate_2", "B03", 4, "2")
    custom = parse_image_name("plate7-well-D05-site-3.tif", r"well-(?P<well>[A-P]\d{2})-site-(?P<site>\d+)")
    assert custom.well.name == "D05" and custom.site == 3
    with pytest.raises(ConfigError, match="named groups"):
        compile_scheme(r"(\d+)")
    with pytest.raises(ConfigError, match="does not match"):
        parse_image_name("random.tif")
