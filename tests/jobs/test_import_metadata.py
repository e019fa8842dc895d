"""ImportImages with plate metadata: channel names, pixel size, z planes, unlisted files and missing fields."""

import json

import numpy as np
import pytest
import tifffile

from batchlib import run_job
from batchlib.errors import ConfigError
from batchlib.io import open_file, read_image
from batchlib.io.images import PIXEL_SIZE_ATTR
from batchlib.jobs.importer import ImportImages
from batchlib.jobs.segmentation import SegmentNucleiThreshold
from batchlib.nucleus_size import DIAMETER_ATTR
from batchlib.report import folder_status, format_status
from tests.test_readers import PLATE, harmony_name, write_harmony_index, write_planes

MAPPING = {"HOECHST 33342": "nuclei", "Alexa 488": "cells"}


@pytest.fixture
def harmony_plate(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_harmony_index(raw, PLATE, names_in_maps=True, pixel_m=6.5e-7)
    pixels = write_planes(raw, PLATE)
    return raw, tmp_path / "P1", pixels


def test_harmony_import_uses_names_pixel_size_and_projects_planes(harmony_plate):
    raw, plate, pixels = harmony_plate
    result = run_job(ImportImages(MAPPING, scheme="harmony", input_folder=raw), plate)
    assert (result.processed, result.failed, result.invalid, result.missing) == (4, 0, 0, {})
    with open_file(plate / "WellC05_PointC05_0002_plate.h5", "r") as f:
        nuclei = read_image(f, "nuclei")
        assert f.attrs[PIXEL_SIZE_ATTR] == pytest.approx(0.65)
        assert f["nuclei"].attrs["ChannelInformation"] == "HOECHST 33342"
    # Two z planes of channel 1 of that field: the container holds their maximum.
    planes = [pixels[harmony_name(3, 5, 2, p, "1")] for p in (1, 2)]
    np.testing.assert_array_equal(nuclei, np.maximum(*planes))


def test_channel_ids_work_too_and_a_name_the_index_lacks_is_a_config_error(harmony_plate):
    raw, plate, _ = harmony_plate
    assert run_job(ImportImages({"1": "nuclei"}, scheme="harmony", input_folder=raw), plate).processed == 4
    with pytest.raises(ConfigError, match=r"maps DAPI, but .*Index.xml lists the channels 1: HOECHST 33342, 2: Alexa"):
        run_job(ImportImages({"DAPI": "nuclei"}, scheme="harmony", input_folder=raw), plate)


def test_unlisted_file_is_invalid_and_missing_fields_are_reported_then_heal(harmony_plate):
    raw, plate, _ = harmony_plate
    lost = raw / harmony_name(2, 3, 2, 2, "2")
    kept_aside = lost.read_bytes()
    lost.unlink()
    stray = raw / harmony_name(4, 4, 1, 1, "1")  # a well the index does not list
    tifffile.imwrite(stray, np.zeros((24, 32), np.uint16))
    job = ImportImages(MAPPING, scheme="harmony", input_folder=raw)
    result = run_job(job, plate)
    assert result.processed == 3
    assert "is not listed in Index.xml" in result.invalid_files[stray.name]  # the metadata cannot name its site
    assert list(result.missing) == ["WellB03_PointB03_0002_plate"]
    assert harmony_name(2, 3, 2, 2, "2") in result.missing["WellB03_PointB03_0002_plate"]
    status = json.loads((plate / "batchlib" / "ImportImages.status").read_text())
    assert status["counts"]["missing"] == 1 and "WellB03_PointB03_0002_plate" in status["missing"]
    assert "1 expected input(s) missing" in format_status(folder_status(plate))
    # The file arrives: the field is imported (from its two planes) and nothing is missing any more.
    lost.write_bytes(kept_aside)
    result = run_job(job, plate)
    assert result.missing == {} and "WellB03_PointB03_0002_plate" not in result.invalid_files
    assert (plate / "WellB03_PointB03_0002_plate.h5").exists()


def test_pixel_size_from_the_metadata_converts_a_diameter_in_micrometres(harmony_plate):
    raw, plate, _ = harmony_plate
    run_job(ImportImages(MAPPING, scheme="harmony", input_folder=raw), plate)
    assert run_job(SegmentNucleiThreshold("nuclei", nucleus_diameter_um=6.5), plate).processed == 4
    with open_file(plate / "WellB03_PointB03_0001_plate.h5", "r") as f:
        assert f.attrs[DIAMETER_ATTR] == pytest.approx(10.0)  # 6.5 um / 0.65 um per pixel


def test_changed_channel_names_in_the_index_reimport(harmony_plate):
    raw, plate, _ = harmony_plate
    job = ImportImages({"1": "nuclei"}, scheme="harmony", input_folder=raw)
    assert run_job(job, plate).processed == 4
    assert run_job(job, plate).processed == 0
    index = raw / "Index.xml"
    index.write_text(index.read_text().replace("HOECHST 33342", "DAPI"))
    assert run_job(ImportImages({"1": "nuclei"}, scheme="harmony", input_folder=raw), plate).processed == 4
    with open_file(plate / "WellB03_PointB03_0001_plate.h5", "r") as f:
        assert f["nuclei"].attrs["ChannelInformation"] == "DAPI"


def test_ome_tiff_plate_import_names_containers_by_well_and_field(tmp_path):
    from tests.test_readers import write_ome_plate

    raw = tmp_path / "raw"
    raw.mkdir()
    pixels = write_ome_plate(raw)
    (raw / "C07_f0.ome.tif").unlink()  # listed, not there
    result = run_job(ImportImages({"DAPI": "nuclei", "GFP": "cells"}, scheme="ome-tiff", input_folder=raw), tmp_path)
    assert result.processed == 2 and list(result.missing) == ["WellC07_PointC07_0000_plate"]
    with open_file(tmp_path / "WellB02_PointB02_0001_plate.h5", "r") as f:
        np.testing.assert_array_equal(read_image(f, "nuclei"), pixels["B02_f1.ome.tif"][0])
        np.testing.assert_array_equal(read_image(f, "cells"), pixels["B02_f1.ome.tif"][1])
        assert f.attrs[PIXEL_SIZE_ATTR] == pytest.approx(0.325) and f["cells"].attrs["ChannelInformation"] == "GFP"


def test_an_imagexpress_plate_with_its_htd_needs_one_file_per_channel(tmp_path):
    from tests.test_readers import metamorph_tiff, write_htd

    raw = tmp_path / "raw"
    raw.mkdir()
    write_htd(raw)
    metamorph_tiff(raw / "Screen1_B02_s1_w1.tif")
    metamorph_tiff(raw / "Screen1_B02_s1_w2.tif")
    with pytest.raises(ConfigError, match="one file per channel"):
        run_job(ImportImages({"DAPI": "nuclei"}, scheme="imagexpress", input_folder=raw), tmp_path / "P")
    job = ImportImages(
        {"DAPI": "nuclei", "FITC": "cells"}, scheme="imagexpress", one_file_per_channel=True, input_folder=raw
    )
    result = run_job(job, tmp_path / "P")
    assert result.processed == 1 and set(result.missing) == {
        "WellB02_PointB02_0002_Screen1",
        "WellC07_PointC07_0001_Screen1",
        "WellC07_PointC07_0002_Screen1",
    }
