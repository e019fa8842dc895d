"""AggregateTables, ExportProfiles and CropCells run alone on containers whose tables and labels are made here."""

import os
import sqlite3

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage.measure import regionprops

from batchlib import run_job
from batchlib.io import open_file, read_plate_table, write_image, write_table
from batchlib.jobs.aggregate import AggregateTables
from batchlib.jobs.crops import CropCells
from batchlib.jobs.export import ExportProfiles

#: (well, site, number of cells) of the made plate.
SITES = [("A01", 0, 5), ("A01", 1, 3), ("B02", 0, 4), ("B02", 1, 0)]


def container_name(well: str, site: int) -> str:
    return f"Well{well}_Point{well}_{site:04d}_ChannelDAPI_Seq0000.h5"


@pytest.fixture
def tabled_plate(tmp_path):
    """A plate of containers holding only the three tables MeasureObjects writes, with random features."""
    rng = np.random.default_rng(7)
    folder = tmp_path / "P1"
    folder.mkdir()
    written = {}
    for well, site, n in SITES:
        label_id = np.arange(1, n + 1)
        cells = pd.DataFrame({"label_id": label_id, "Cells_AreaShape_Area": rng.uniform(100, 400, n)})
        nuclei = pd.DataFrame({"label_id": label_id, "Nuclei_Intensity_Mean": rng.uniform(0, 1, n)})
        cytoplasm = pd.DataFrame({"label_id": label_id, "Cytoplasm_Intensity_Mean": rng.uniform(0, 1, n)})
        name = container_name(well, site)
        with open_file(folder / name, "a") as f:
            write_table(f, "cell_segmentation/default", cells)
            write_table(f, "nucleus_segmentation/default", nuclei)
            write_table(f, "cell_segmentation/cytoplasm", cytoplasm)
        written[name] = cells.merge(nuclei, on="label_id").merge(cytoplasm, on="label_id").assign(well=well)
    return folder, written


def test_aggregate_tables_match_pandas_on_the_cells_written(tabled_plate):
    folder, written = tabled_plate
    result = run_job(AggregateTables(min_cells=2, focus_channel=None, score_feature="Cells_AreaShape_Area"), folder)
    assert result.failed == 0 and result.processed == 1
    with open_file(folder / "P1_table.hdf5", "r") as f:
        images = read_plate_table(f, "images").set_index("image_name")
        wells = read_plate_table(f, "wells").set_index("well_name")
    everything = pd.concat(written.values(), ignore_index=True)
    features = ["Cells_AreaShape_Area", "Nuclei_Intensity_Mean", "Cytoplasm_Intensity_Mean"]
    for name, cells in written.items():
        row = images.loc[os.path.splitext(name)[0]]
        assert row["n_cells"] == len(cells) and row["too_few_cells"] == (len(cells) < 2)
        for feature in features:
            expected = cells[feature].median() if len(cells) else np.nan
            np.testing.assert_allclose(row[f"median_{feature}"], expected)
    for well, cells in everything.groupby("well"):
        assert wells.loc[well, "n_cells"] == len(cells) and wells.loc[well, "n_images"] == 2
        for feature in features:
            np.testing.assert_allclose(wells.loc[well, f"median_{feature}"], cells[feature].median())
        np.testing.assert_allclose(wells.loc[well, "score"], cells["Cells_AreaShape_Area"].median())


def test_export_writes_every_cell_once_in_sqlite_and_parquet(tabled_plate):
    folder, written = tabled_plate
    assert run_job(ExportProfiles(), folder).processed == 1
    out = folder / "P1_profiles"
    everything = pd.concat(written.values(), ignore_index=True)
    with sqlite3.connect(out / "P1.sqlite") as connection:
        images = pd.read_sql("SELECT * FROM Image", connection)
        nuclei = pd.read_sql("SELECT * FROM Nuclei", connection)
    assert sorted(images["n_cells"]) == sorted(n for _, _, n in SITES)
    assert len(nuclei) == len(everything)
    np.testing.assert_allclose(np.sort(nuclei["Nuclei_Intensity_Mean"]), np.sort(everything["Nuclei_Intensity_Mean"]))
    single = pd.read_parquet(out / "P1_single_cell.parquet")
    assert len(single) == len(everything) and set(single["Metadata_Well"]) == {"A01", "B02"}
    # An image and its cells keep one ImageNumber across the Image table and the compartments.
    counts = nuclei.groupby("ImageNumber").size()
    assert images.set_index("ImageNumber")["n_cells"].loc[counts.index].tolist() == counts.tolist()


def test_crop_cells_png_writes_a_centred_crop_and_mask_per_cell(tmp_path):
    folder = tmp_path / "P1"
    folder.mkdir()
    labels = np.zeros((60, 80), np.uint32)
    labels[10:21, 10:17] = 1  # inside; centroid (15, 13)
    labels[0:6, 70:80] = 2  # in a corner: touches the border
    labels[30:44, 40:50] = 3
    image = np.arange(60 * 80, dtype=np.uint16).reshape(60, 80)
    name = container_name("A01", 0)
    with open_file(folder / name, "a") as f:
        write_image(f, "cell_segmentation", labels, is_label=True)
        write_image(f, "nuclei", image)
    assert run_job(CropCells(["nuclei"], size=16, format="png"), folder).processed == 1
    crops = folder / (os.path.splitext(name)[0] + ".crops")
    metadata = pd.read_csv(crops / "metadata.csv").set_index("label")
    assert sorted(metadata.index) == [1, 2, 3]
    for region in regionprops(labels):  # scikit-image as the reference for centroid and box
        row = metadata.loc[region.label]
        np.testing.assert_allclose([row["centroid_y"], row["centroid_x"]], region.centroid)
        assert (row["bbox_min_y"], row["bbox_min_x"], row["bbox_max_y"], row["bbox_max_x"]) == region.bbox
        mask = np.asarray(Image.open(crops / f"{region.label}_mask.png")) > 0
        crop = np.asarray(Image.open(crops / f"{region.label}_nuclei.png"))
        assert mask.shape == crop.shape == (16, 16) and mask.sum() == region.area
    assert metadata["touches_border"].tolist() == [False, True, False]
    # Cell 1's crop is the image window with its centroid at (size // 2, size // 2); the pixel values say where.
    crop = np.asarray(Image.open(crops / "1_nuclei.png")).astype(np.int64)
    y0, x0 = divmod(int(crop[0, 0]), 80)
    np.testing.assert_array_equal(crop, image[y0 : y0 + 16, x0 : x0 + 16])
    assert (15 - y0, 13 - x0) == (8, 8)


def test_aggregate_and_export_of_one_plate_read_each_container_once(tabled_plate, tmp_path):
    import shutil

    folder, _ = tabled_plate
    other = tmp_path / "other" / "P1"
    shutil.copytree(folder, other, ignore=shutil.ignore_patterns("batchlib"))
    aggregate, export = AggregateTables(min_cells=2, focus_channel=None), ExportProfiles()
    run_job(aggregate, folder)
    run_job(export, folder)
    assert aggregate._cache is export._cache and export._cache.reads == 4
    alone = ExportProfiles()  # another plate: a cache of its own, and the same export as with the shared one
    run_job(alone, other)
    assert alone._cache is not export._cache and alone._cache.reads == 4
    assert_same_export(folder / "P1_profiles", other / "P1_profiles")


def test_jobs_reading_other_tables_of_one_plate_keep_each_others_cached_cells(tabled_plate):
    folder, _ = tabled_plate
    aggregate, nuclei_only = AggregateTables(min_cells=2, focus_channel=None), ExportProfiles(cell_key=None)
    for _ in range(2):  # a watcher's runs with nothing new: nothing read again
        run_job(aggregate, folder, force_recompute=True)
        run_job(nuclei_only, folder, force_recompute=True)
    assert aggregate._cache is nuclei_only._cache and aggregate._cache.reads == 4 + 4


def test_a_job_object_run_again_reads_only_new_and_changed_containers_with_equal_results(tabled_plate, tmp_path):
    import shutil

    from batchlib.io import read_table

    folder, _ = tabled_plate
    job = AggregateTables(min_cells=2, focus_channel=None)
    run_job(job, folder)
    assert job._cache.reads == 4
    # One new image and one changed (a watcher runs the plate jobs again and again in one process).
    keys = ("cell_segmentation/default", "nucleus_segmentation/default", "cell_segmentation/cytoplasm")
    with open_file(folder / container_name("A01", 0), "r") as source:
        tables = {key: read_table(source, key) for key in keys}
    with open_file(folder / container_name("C03", 0), "a") as f:
        for key, table in tables.items():
            write_table(f, key, table)
    with open_file(folder / container_name("B02", 0), "a") as f:
        f.attrs["touched"] = 1
    run_job(job, folder)
    assert job._cache.reads == 4 + 2
    assert job._image_rows.computed == 4 + 2 and job._well_rows.computed == 2 + 2  # C03 new, B02 changed
    fresh = tmp_path / "fresh" / "P1"
    shutil.copytree(folder, fresh, ignore=shutil.ignore_patterns("batchlib", "P1_table.hdf5"))
    run_job(AggregateTables(min_cells=2, focus_channel=None), fresh)
    for kind in ("images", "wells"):
        with open_file(folder / "P1_table.hdf5", "r") as a, open_file(fresh / "P1_table.hdf5", "r") as b:
            pd.testing.assert_frame_equal(read_plate_table(a, kind), read_plate_table(b, kind))


def add_container(folder, well: str, site: int, n: int, rng, extra_feature: bool = False) -> None:
    """A container with the three tables MeasureObjects writes, ``n`` cells of random features."""
    label_id = np.arange(1, n + 1)
    cells = pd.DataFrame({"label_id": label_id, "Cells_AreaShape_Area": rng.uniform(100, 400, n)})
    if extra_feature:
        cells["Cells_AreaShape_Perimeter"] = rng.uniform(30, 90, n)
    nuclei = pd.DataFrame({"label_id": label_id, "Nuclei_Intensity_Mean": rng.uniform(0, 1, n)})
    cytoplasm = pd.DataFrame({"label_id": label_id, "Cytoplasm_Intensity_Mean": rng.uniform(0, 1, n)})
    with open_file(folder / container_name(well, site), "a") as f:
        write_table(f, "cell_segmentation/default", cells)
        write_table(f, "nucleus_segmentation/default", nuclei)
        write_table(f, "cell_segmentation/cytoplasm", cytoplasm)


def test_export_numbers_images_alike_in_every_table_with_an_image_without_cells(tmp_path):
    folder = tmp_path / "P1"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for well, site, n in [("A01", 0, 0), ("A01", 1, 3), ("B02", 0, 2)]:  # the first image has no cells
        add_container(folder, well, site, n, rng)
    assert run_job(ExportProfiles(), folder).processed == 1
    with sqlite3.connect(folder / "P1_profiles" / "P1.sqlite") as connection:
        images = pd.read_sql("SELECT * FROM Image", connection).set_index("ImageNumber")
        nuclei = pd.read_sql("SELECT * FROM Nuclei", connection)
    single = pd.read_parquet(folder / "P1_profiles" / "P1_single_cell.parquet")
    for number, cells in nuclei.groupby("ImageNumber"):
        image = images.loc[number]
        assert image["n_cells"] == len(cells)
        profiles = single[single["Metadata_ImageNumber"] == number]
        assert {(image["Metadata_Well"], image["Metadata_Site"])} == set(
            zip(profiles["Metadata_Well"], profiles["Metadata_Site"])
        )
    assert sorted(set(single["Metadata_ImageNumber"])) == [2, 3]


def profile_tables(folder) -> dict[str, pd.DataFrame]:
    """Every table of an export folder: the SQLite tables, the Parquet and CSV files."""
    tables = {}
    with sqlite3.connect(folder / "P1.sqlite") as connection:
        for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            tables[f"sqlite:{name}"] = pd.read_sql(f"SELECT * FROM {name}", connection)
    for path in sorted(folder.iterdir()):
        if path.suffix == ".parquet":
            tables[path.name] = pd.read_parquet(path)
        elif path.suffix == ".csv":
            tables[path.name] = path.read_bytes()
    return tables


def assert_same_export(got_folder, want_folder) -> None:
    """The two export folders hold the same files and tables (CSV files byte for byte)."""
    got, want = profile_tables(got_folder), profile_tables(want_folder)
    assert got.keys() == want.keys()
    for name in want:
        if isinstance(want[name], bytes):
            assert got[name] == want[name], name
        else:
            pd.testing.assert_frame_equal(got[name], want[name], obj=name)


SCENARIOS = {  # what happens to the plate between two runs of one job object, and what the export does then
    "a new well after the others": ("append", lambda folder, rng: add_container(folder, "C03", 0, 4, rng)),
    "a new site of the last well": ("append", lambda folder, rng: add_container(folder, "B02", 2, 3, rng)),
    "a new image that sorts before others": ("rewrite", lambda folder, rng: add_container(folder, "A02", 0, 2, rng)),
    "an image changed": ("rewrite", lambda folder, rng: add_container(folder, "A01", 1, 6, rng)),
    "an image removed": ("rewrite", lambda folder, rng: os.remove(folder / container_name("A01", 1))),
    "a new image with another feature": (
        "rewrite",
        lambda folder, rng: add_container(folder, "C03", 0, 2, rng, extra_feature=True),
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_watchers_export_equals_a_fresh_export(tabled_plate, tmp_path, scenario):
    import shutil

    folder, _ = tabled_plate
    job = ExportProfiles()
    run_job(job, folder)
    action, change = SCENARIOS[scenario]
    change(folder, np.random.default_rng(11))
    assert run_job(job, folder).processed == 1
    assert job._last_action == action
    fresh = tmp_path / "fresh" / "P1"
    shutil.copytree(folder, fresh, ignore=shutil.ignore_patterns("batchlib", "P1_profiles"))
    run_job(ExportProfiles(), fresh)
    assert_same_export(folder / "P1_profiles", fresh / "P1_profiles")


def test_appends_in_a_row_add_parquet_parts_and_equal_a_fresh_export(tabled_plate, tmp_path):
    import shutil

    import pyarrow.parquet as pq

    from batchlib.parquet_parts import part_names

    folder, _ = tabled_plate
    job = ExportProfiles()
    run_job(job, folder)
    parts = folder / "P1_profiles" / "P1_single_cell.parquet"
    first_part = os.stat(parts / "part-00000.parquet").st_ino
    # Rows per part after each one-cell well, by hand: the newest parts merge while the one before is no larger.
    expected = [[12, 1], [12, 2], [12, 2, 1], [12, 4], [12, 4, 1]]
    rng = np.random.default_rng(12)
    for well, rows in zip(("C03", "C04", "C05", "C06", "C07"), expected):
        add_container(folder, well, 0, 1, rng)
        run_job(job, folder)
        assert job._last_action == "append"
        assert [pq.read_metadata(parts / name).num_rows for name in part_names(parts)] == rows
    assert os.stat(parts / "part-00000.parquet").st_ino == first_part  # never rewritten: hard-linked along
    fresh = tmp_path / "fresh" / "P1"
    shutil.copytree(folder, fresh, ignore=shutil.ignore_patterns("batchlib", "P1_profiles"))
    run_job(ExportProfiles(), fresh)
    assert_same_export(folder / "P1_profiles", fresh / "P1_profiles")
    assert part_names(fresh / "P1_profiles" / "P1_single_cell.parquet") == ["part-00000.parquet"]


def test_a_watchers_export_starts_over_when_its_folder_was_touched(tabled_plate):
    folder, _ = tabled_plate
    job = ExportProfiles()
    run_job(job, folder)
    with open(folder / "P1_profiles" / "P1_single_cell.csv", "a") as f:
        f.write("not a row\n")
    add_container(folder, "C03", 0, 4, np.random.default_rng(5))
    run_job(job, folder)
    assert job._last_action == "rewrite"
    assert b"not a row" not in (folder / "P1_profiles" / "P1_single_cell.csv").read_bytes()


def test_an_append_extends_the_sqlite_file_in_place_and_renames_the_others(tabled_plate):
    """The SQLite file gets the new rows where it is (one transaction, no copy); the CSV is a new file."""
    folder, _ = tabled_plate
    job = ExportProfiles()
    run_job(job, folder)
    export = folder / "P1_profiles"
    inodes = {name: os.stat(export / name).st_ino for name in ("P1.sqlite", "P1_single_cell.csv")}
    csv_before = (export / "P1_single_cell.csv").read_bytes()
    add_container(folder, "C03", 0, 4, np.random.default_rng(13))
    run_job(job, folder)
    assert job._last_action == "append"
    assert os.stat(export / "P1.sqlite").st_ino == inodes["P1.sqlite"]
    assert os.stat(export / "P1_single_cell.csv").st_ino != inodes["P1_single_cell.csv"]  # renamed into place
    csv_after = (export / "P1_single_cell.csv").read_bytes()
    assert csv_after.startswith(csv_before) and csv_after.count(b"\n") == csv_before.count(b"\n") + 4
    assert not (export / ".batchlib-appending").exists()


def test_an_append_cut_short_is_written_whole_by_the_next_run(tabled_plate, tmp_path, monkeypatch):
    import shutil

    from batchlib import profile_files
    from batchlib.errors import ResourceError

    folder, _ = tabled_plate
    job = ExportProfiles()
    run_job(job, folder)
    add_container(folder, "C03", 0, 4, np.random.default_rng(14))
    real_write_parquet = profile_files.write_parquet

    def fail_on_the_wells(table, path):  # the SQLite and CSV rows are appended by then
        if "well_profiles" in str(path):
            raise OSError(28, "No space left on device")
        real_write_parquet(table, path)

    monkeypatch.setattr(profile_files, "write_parquet", fail_on_the_wells)
    with pytest.raises(ResourceError, match="no space left"):
        run_job(job, folder)
    assert (folder / "P1_profiles" / ".batchlib-appending").exists()
    monkeypatch.setattr(profile_files, "write_parquet", real_write_parquet)
    assert run_job(job, folder).processed == 1
    assert job._last_action == "rewrite"
    fresh = tmp_path / "fresh" / "P1"
    shutil.copytree(folder, fresh, ignore=shutil.ignore_patterns("batchlib", "P1_profiles"))
    run_job(ExportProfiles(), fresh)
    assert_same_export(folder / "P1_profiles", fresh / "P1_profiles")
    assert not (folder / "P1_profiles" / ".batchlib-appending").exists()


def test_an_append_without_hard_links_copies_the_sqlite_file(tabled_plate, tmp_path, monkeypatch):
    import shutil

    folder, _ = tabled_plate
    job = ExportProfiles()
    run_job(job, folder)
    sqlite_inode = os.stat(folder / "P1_profiles" / "P1.sqlite").st_ino

    real_link = os.link

    def no_hard_links_for_exports(source, target, **kwargs):  # the folder lock still links its claim
        if str(source).endswith(".sqlite"):
            raise OSError(1, "Operation not permitted")
        return real_link(source, target, **kwargs)

    monkeypatch.setattr(os, "link", no_hard_links_for_exports)
    add_container(folder, "C03", 0, 4, np.random.default_rng(15))
    run_job(job, folder)
    assert job._last_action == "append"
    assert os.stat(folder / "P1_profiles" / "P1.sqlite").st_ino != sqlite_inode
    fresh = tmp_path / "fresh" / "P1"
    shutil.copytree(folder, fresh, ignore=shutil.ignore_patterns("batchlib", "P1_profiles"))
    run_job(ExportProfiles(), fresh)
    assert_same_export(folder / "P1_profiles", fresh / "P1_profiles")


KILLED_DURING_AN_APPEND = """
import os, shutil, signal, sys
from batchlib import profile_files, run_job
from batchlib.jobs.export import ExportProfiles

folder, new_container = sys.argv[1], sys.argv[2]
job = ExportProfiles()
run_job(job, folder)
shutil.move(new_container, folder)

def killed(*args):  # the SQLite rows are committed, the new folder is written but for its well profiles
    os.kill(os.getpid(), signal.SIGKILL)

profile_files.write_well_profiles = killed
run_job(job, folder)
"""


def test_an_export_killed_during_an_append_is_written_whole_by_the_next_run(tabled_plate, tmp_path):
    import shutil
    import subprocess
    import sys

    folder, _ = tabled_plate
    side = tmp_path / "side"
    side.mkdir()
    add_container(side, "C03", 0, 4, np.random.default_rng(16))
    new_container = side / container_name("C03", 0)
    done = subprocess.run(
        [sys.executable, "-c", KILLED_DURING_AN_APPEND, str(folder), str(new_container)],
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == -9, done.stderr.decode()
    export = folder / "P1_profiles"
    assert (export / ".batchlib-appending").exists()
    with sqlite3.connect(export / "P1.sqlite") as connection:  # the kill came after the SQLite commit
        assert connection.execute("SELECT COUNT(*) FROM Image").fetchone()[0] == len(SITES) + 1
    assert [p.name for p in folder.iterdir() if p.name.startswith(".batchlib-tmp-")]  # the new folder, cut short

    assert run_job(ExportProfiles(), folder).processed == 1
    assert not (export / ".batchlib-appending").exists()
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".batchlib-tmp-")]
    fresh = tmp_path / "fresh" / "P1"
    shutil.copytree(folder, fresh, ignore=shutil.ignore_patterns("batchlib", "P1_profiles"))
    run_job(ExportProfiles(), fresh)
    assert_same_export(export, fresh / "P1_profiles")
