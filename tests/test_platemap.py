"""Plate maps: reading the handbook's layout, and the tables and profiles they annotate."""

import sqlite3
import warnings

import numpy as np
import pandas as pd
import pytest
from jobs.test_tables_and_crops import SITES, add_container, tabled_plate  # noqa: F401 (a fixture)

from batchlib import run_job
from batchlib.errors import ConfigError
from batchlib.io import open_file, read_plate_table
from batchlib.jobs.aggregate import AggregateTables
from batchlib.jobs.export import ExportProfiles
from batchlib.platemap import platemap_for, read_platemap

#: The plate map of the made plate (SITES: wells A01 and B02), with a well never imaged.
PLATEMAP = "plate_map_name\twell_position\tbroad_sample\tpert_type\tmmoles_per_liter\n" + "".join(
    f"M1\t{well}\t{sample}\t{kind}\t{dose}\n"
    for well, sample, kind, dose in [
        ("A01", "DMSO", "control", 0.0),
        ("B02", "BRD-1", "trt", 10.0),
        ("C03", "BRD-2", "trt", 1.0),
    ]
)


def test_read_platemap_prefixes_columns_and_names_wells_as_batchlib(tmp_path):
    path = tmp_path / "M1.txt"
    path.write_text(PLATEMAP)
    table = read_platemap(str(path))
    assert list(table.columns) == [
        "Metadata_Well",
        "Metadata_plate_map_name",
        "Metadata_broad_sample",
        "Metadata_pert_type",
        "Metadata_mmoles_per_liter",
    ]
    assert table["Metadata_Well"].tolist() == ["A01", "B02", "C03"]
    # The same values as pycytominer's loader (which keeps well_position as it is written).
    from pycytominer.cyto_utils.load import load_platemap

    theirs = load_platemap(str(path))
    pd.testing.assert_frame_equal(table.drop(columns="Metadata_Well"), theirs.drop(columns="Metadata_well_position"))
    csv = tmp_path / "M1.csv"
    csv.write_text(PLATEMAP.replace("\t", ","))
    pd.testing.assert_frame_equal(read_platemap(str(csv)), table)


@pytest.mark.parametrize(
    "text, message",
    [
        ("well\tpert_type\nA01\tcontrol\n", "no 'well_position' column"),
        ("well_position\tpert_type\nA01\tcontrol\na1\ttrt\n", "more than once: A01"),
        ("well_position\tpert_type\nA0\tcontrol\n", "cannot parse well name"),
    ],
)
def test_a_bad_platemap_is_a_clear_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        read_platemap(str(path))
    assert str(path) in str(caught.value)


def test_a_barcode_platemap_finds_each_plates_map_in_the_handbook_layout(tmp_path):
    batch = tmp_path / "metadata" / "platemaps" / "2024_01_01_Batch1"
    (batch / "platemap").mkdir(parents=True)
    (batch / "platemap" / "M1.txt").write_text(PLATEMAP)
    barcodes = batch / "barcode_platemap.csv"
    barcodes.write_text("Assay_Plate_Barcode,Plate_Map_Name\nP1,M1\nP2,M2\n")
    assert platemap_for(str(barcodes), "P1") == str(batch / "platemap" / "M1.txt")
    with pytest.raises(ConfigError, match="no row for plate 'P3'"):
        platemap_for(str(barcodes), "P3")
    with pytest.raises(ConfigError, match="M2.txt does not exist"):
        platemap_for(str(barcodes), "P2")
    plain = batch / "platemap" / "M1.txt"
    assert platemap_for(str(plain), "P1") == str(plain)


def test_tables_and_profiles_carry_the_platemap_and_report_mismatches(tabled_plate, tmp_path):  # noqa: F811
    folder, _ = tabled_plate
    path = tmp_path / "M1.txt"
    path.write_text(PLATEMAP)
    aggregated = run_job(AggregateTables(min_cells=1, focus_channel=None, platemap=str(path)), folder)
    assert aggregated.processed == 1
    reported = [m for messages in aggregated.warnings.values() for m in messages]
    assert any("wells in the map never imaged: C03" in m for m in reported), reported
    with open_file(folder / "P1_table.hdf5", "r") as f:
        images, wells = read_plate_table(f, "images"), read_plate_table(f, "wells")
    assert wells.set_index("well_name")["Metadata_pert_type"].to_dict() == {"A01": "control", "B02": "trt"}
    assert images["Metadata_broad_sample"].tolist() == ["DMSO"] * 2 + ["BRD-1"] * 2
    assert run_job(ExportProfiles(platemap=str(path)), folder).processed == 1
    out = folder / "P1_profiles"
    with sqlite3.connect(out / "P1.sqlite") as connection:
        image_table = pd.read_sql("SELECT * FROM Image", connection)
    assert set(zip(image_table["Metadata_Well"], image_table["Metadata_pert_type"])) == {
        ("A01", "control"),
        ("B02", "trt"),
    }
    single = pd.read_parquet(out / "P1_single_cell.parquet")
    assert len(single) == sum(n for _, _, n in SITES)
    # Our annotated well profiles equal pycytominer's annotate on the plain ones (the wells both keep).
    from pycytominer import annotate

    annotated = pd.read_parquet(out / "P1_well_profiles.parquet")
    plain = annotated[
        [c for c in annotated.columns if c in ("Metadata_Plate", "Metadata_Well") or not c.startswith("Metadata_")]
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = annotate(plain, str(path), join_on=["Metadata_well_position", "Metadata_Well"])
    theirs = theirs.set_index("Metadata_Well").loc[annotated["Metadata_Well"]].reset_index()
    pd.testing.assert_frame_equal(annotated[sorted(annotated.columns)], theirs[sorted(theirs.columns)], rtol=1e-9)


def test_an_edited_platemap_reruns_the_tables(tabled_plate, tmp_path):  # noqa: F811
    folder, _ = tabled_plate
    path = tmp_path / "M1.txt"
    path.write_text(PLATEMAP)
    assert run_job(AggregateTables(min_cells=1, focus_channel=None, platemap=str(path)), folder).processed == 1
    assert run_job(AggregateTables(min_cells=1, focus_channel=None, platemap=str(path)), folder).processed == 0
    path.write_text(PLATEMAP.replace("BRD-1", "BRD-9"))
    assert run_job(AggregateTables(min_cells=1, focus_channel=None, platemap=str(path)), folder).processed == 1
    with open_file(folder / "P1_table.hdf5", "r") as f:
        assert "BRD-9" in set(read_plate_table(f, "wells")["Metadata_broad_sample"])


def test_a_watchers_export_with_a_platemap_equals_a_fresh_one(tabled_plate, tmp_path):  # noqa: F811
    import shutil

    from jobs.test_tables_and_crops import assert_same_export, profile_tables

    folder, _ = tabled_plate
    path = tmp_path / "M1.txt"
    path.write_text(PLATEMAP)
    job = ExportProfiles(platemap=str(path))
    run_job(job, folder)
    add_container(folder, "C03", 0, 4, np.random.default_rng(2))  # the map's third well, imaged now
    run_job(job, folder)
    assert job._last_action == "append"
    fresh = tmp_path / "fresh" / "P1"
    shutil.copytree(folder, fresh, ignore=shutil.ignore_patterns("batchlib", "P1_profiles"))
    run_job(ExportProfiles(platemap=str(path)), fresh)
    assert_same_export(folder / "P1_profiles", fresh / "P1_profiles")
    got = profile_tables(folder / "P1_profiles")
    assert "BRD-2" in set(got["P1_well_profiles.parquet"]["Metadata_broad_sample"])
