"""End to end: the cell-analysis workflow on a small synthetic plate."""

import os
import sqlite3

import numpy as np
import pytest
import zarr

from batchlib.cell_analysis import cell_analysis_main, parse_steps
from batchlib.demo import write_demo_plate
from batchlib.errors import ConfigError
from batchlib.io import open_file, read_plate_table, read_table


def run(folder, raw, *extra):
    return cell_analysis_main(
        ["--folder", folder, "--input-folder", raw, "--nuclei-method", "threshold", "--no-progress", *extra]
    )


def test_outputs_layout_and_incremental_rerun(tmp_path):
    raw, folder = str(tmp_path / "raw"), str(tmp_path / "P7")
    write_demo_plate(raw, wells={"C01": 1.0, "C02": 2.5}, sites=2, shape=(160, 160), n_nuclei=15)
    assert run(folder, raw, "--omezarr") == 0
    containers = sorted(n for n in os.listdir(folder) if n.endswith(".h5"))
    assert len(containers) == 4
    with open_file(os.path.join(folder, containers[0]), "r") as f:
        for key in ("nuclei", "cells", "marker", "nucleus_segmentation", "cell_segmentation"):
            assert f"{key}/s0" in f
        assert len(read_table(f, "cell_segmentation/default")) > 5
    table_file = os.path.join(folder, "P7_table.hdf5")
    with open_file(table_file, "r") as f:
        images, wells = read_plate_table(f, "images"), read_plate_table(f, "wells")
    assert images["site_name"].tolist() == ["C01-0000", "C01-0001", "C02-0000", "C02-0001"]
    assert wells["well_name"].tolist() == ["C01", "C02"] and wells["n_images"].tolist() == [2, 2]
    assert wells["n_cells"].sum() == images["n_cells"].sum()
    # The marker level differs between the wells, and the score shows it.
    assert wells["score"][1] > 1.5 * wells["score"][0]
    plate = zarr.open_group(os.path.join(folder, "P7.ome.zarr"), mode="r")
    assert [w["path"] for w in plate.attrs["plate"]["wells"]] == ["C/1", "C/2"]

    # New images arrive: only they are processed, and the aggregates include them; the plate's OME-Zarr,
    # asked for once, stays current without --omezarr.
    write_demo_plate(raw, wells={"C01": 1.0, "C02": 2.5, "D05": 1.0}, sites=2, shape=(160, 160), n_nuclei=15)
    before = {n: os.stat(os.path.join(folder, n)).st_mtime_ns for n in containers}
    assert run(folder, raw) == 0
    assert {n: os.stat(os.path.join(folder, n)).st_mtime_ns for n in containers} == before
    with open_file(table_file, "r") as f:
        wells = read_plate_table(f, "wells")
    assert wells["well_name"].tolist() == ["C01", "C02", "D05"]
    assert "D/5" in zarr.open_group(os.path.join(folder, "P7.ome.zarr"), mode="r")


def test_omezarr_export_runs_only_when_asked_for_or_already_there(tmp_path):
    from batchlib.cell_analysis import cell_analysis_jobs, cell_analysis_parser

    def job_names(folder, *extra):
        args = cell_analysis_parser().parse_args(["--folder", folder, "--nuclei-method", "threshold", *extra])
        return [type(job).__name__ for job in cell_analysis_jobs(args)]

    folder = str(tmp_path / "P9")
    assert "OmeZarrExport" not in job_names(folder)
    assert "OmeZarrExport" in job_names(folder, "--omezarr")
    assert "OmeZarrExport" in job_names(folder, "--steps", "import,export_omezarr")
    os.makedirs(os.path.join(folder, "P9.ome.zarr"))  # exported by an earlier run: kept current
    assert "OmeZarrExport" in job_names(folder)
    assert "OmeZarrExport" not in job_names(folder, "--skip", "export_omezarr")


def test_steps_and_bad_options(tmp_path, capsys):
    assert parse_steps("import,measure", None) == ["import", "measure"]
    with pytest.raises(ConfigError, match="unknown step"):
        parse_steps("import,nope", None)
    raw, folder = str(tmp_path / "raw"), str(tmp_path / "P")
    write_demo_plate(raw, sites=1, shape=(96, 96), n_nuclei=5)
    assert run(folder, raw, "--steps", "import,segment_nuclei") == 0
    assert not os.path.exists(os.path.join(folder, "P_table.hdf5"))
    # Steps that do not start with import read the containers, not --input-folder.
    assert run(folder, raw, "--steps", "segment_cells,measure,aggregate", "--min-cells", "1") == 0
    with open_file(os.path.join(folder, "P_table.hdf5"), "r") as f:
        assert len(read_plate_table(f, "images")) == len(os.listdir(raw))
    assert run(folder, raw, "--channels", "DAPI:dna") == 2
    assert "--nuclei-channel 'nuclei'" in capsys.readouterr().err
    assert run(folder, str(tmp_path / "missing")) == 2
    assert f"ImportImages: input folder {tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    np.testing.assert_equal(run(folder, raw, "--skip", "export_omezarr,aggregate"), 0)


def test_export_matches_pycytominer(tmp_path):
    import sqlite3

    import pandas as pd
    from pycytominer import aggregate

    raw, folder = str(tmp_path / "raw"), str(tmp_path / "P9")
    write_demo_plate(raw, wells={"B02": 1.0, "B03": 2.0}, sites=2, shape=(160, 160), n_nuclei=15)
    platemap = tmp_path / "platemap.txt"
    platemap.write_text("well_position\tpert_type\nB02\tcontrol\nB03\ttrt\n")
    assert run(folder, raw, "--skip", "export_omezarr", "--platemap", str(platemap)) == 0
    out = os.path.join(folder, "P9_profiles")
    single = pd.read_parquet(os.path.join(out, "P9_single_cell.parquet"))
    assert list(single.columns[:4]) == ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_pert_type"]
    assert dict(zip(single["Metadata_Well"], single["Metadata_pert_type"])) == {"B02": "control", "B03": "trt"}
    qc = os.path.join(folder, "P9_qc")
    drawn = sorted(name for name in os.listdir(qc) if name.startswith("heatmap_n_cells"))
    assert drawn == ["heatmap_n_cells.png", "heatmap_n_cells_control.png", "heatmap_n_cells_trt.png"]
    pd.testing.assert_frame_equal(pd.read_csv(os.path.join(out, "P9_single_cell.csv")), single, check_dtype=False)
    with open(os.path.join(out, "P9_single_cell.csv")) as f:
        assert f.readline().rstrip("\n") == ",".join(single.columns)  # a plain header, as pandas writes it
    wells_csv = pd.read_csv(os.path.join(out, "P9_well_profiles.csv"))
    pd.testing.assert_frame_equal(
        wells_csv, pd.read_parquet(os.path.join(out, "P9_well_profiles.parquet")), check_dtype=False
    )
    theirs = aggregate(single, strata=["Metadata_Plate", "Metadata_Well"], features="infer", operation="median")
    with open_file(os.path.join(folder, "P9_table.hdf5"), "r") as f:
        ours = read_plate_table(f, "wells")
    features = [c for c in theirs.columns if c.startswith(("Nuclei_", "Cells_", "Cytoplasm_"))]
    assert len(features) > 50
    for feature in features:
        np.testing.assert_allclose(ours[f"median_{feature}"], theirs[feature], rtol=1e-9, err_msg=feature)
    wells = pd.read_parquet(os.path.join(out, "P9_well_profiles.parquet"))
    np.testing.assert_allclose(wells[features].to_numpy(), theirs[features].to_numpy(), rtol=1e-9)
    # With a plate map the normalize step runs: pycytominer's normalize (standardize, all wells) on the profiles.
    from pycytominer import normalize

    normalized = pd.read_parquet(os.path.join(folder, "P9_normalized", "P9_normalized.parquet"))
    reference = normalize(wells, features="infer", meta_features="infer", samples="all", method="standardize")
    np.testing.assert_allclose(normalized[features].to_numpy(), reference[features].to_numpy(), rtol=1e-9, atol=1e-12)
    with sqlite3.connect(os.path.join(out, "P9.sqlite")) as db:
        tables = {r[0] for r in db.execute("select name from sqlite_master where type='table'")}
        assert tables == {"Image", "Nuclei", "Cells", "Cytoplasm"}
        n_cells = db.execute("select count(*) from Cells").fetchone()[0]
        assert n_cells == len(single)
        joined = db.execute("select count(*) from Cells c join Image i on c.ImageNumber = i.ImageNumber").fetchone()
        assert joined[0] == n_cells
    # pycytominer's own reader of a CellProfiler/cytominer-database backend, with its defaults.
    sqlite = os.path.join(out, "P9.sqlite")
    merged, profiles = single_cells_reader(f"sqlite:///{sqlite}")
    assert len(merged) == len(single)
    keys = ["Metadata_ImageNumber", "Metadata_ObjectNumber"]
    merged = merged.sort_values(keys).reset_index(drop=True)  # Metadata_ObjectNumber: the nuclei's
    ours_sorted = single.sort_values(keys).reset_index(drop=True)
    np.testing.assert_array_equal(merged[keys].to_numpy(), ours_sorted[keys].to_numpy())
    np.testing.assert_array_equal(merged["Metadata_Well"].to_numpy(), ours_sorted["Metadata_Well"].to_numpy())
    np.testing.assert_allclose(merged[features].to_numpy(float), ours_sorted[features].to_numpy(float), rtol=1e-12)
    profiles = profiles.set_index("Metadata_Well").loc[ours["well_name"]]
    assert profiles["Metadata_Object_Count"].tolist() == ours["n_cells"].tolist()
    assert profiles["Metadata_Site_Count"].tolist() == ours["n_images"].tolist()
    assert set(features) <= set(profiles.columns)
    for feature in features:
        np.testing.assert_allclose(profiles[feature], ours[f"median_{feature}"], rtol=1e-9, err_msg=feature)


def single_cells_reader(url: str):
    """pycytominer's SingleCells with its defaults: the merged single cells and ``aggregate_profiles()``."""
    import warnings

    from pycytominer.cyto_utils.cells import SingleCells

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # SingleCells points to CytoTable
        reader = SingleCells(url)
        try:
            return reader.merge_single_cells(), reader.aggregate_profiles()
        finally:
            reader.conn.close()
            reader.engine.dispose()


def test_crops_and_qc(tmp_path):
    from PIL import Image

    from batchlib.crops import open_crops

    raw, folder = str(tmp_path / "raw"), str(tmp_path / "P3")
    write_demo_plate(raw, wells={"A01": 1.0, "H12": 2.0}, sites=1, shape=(128, 128), n_nuclei=8)
    assert run(folder, raw, "--crop-size", "32", "--skip", "export_omezarr,export") == 0
    crop_files = sorted(n for n in os.listdir(folder) if n.endswith(".crops.hdf5"))
    assert len(crop_files) == 2 and not [n for n in os.listdir(folder) if n.endswith(".crops")]
    crops = open_crops(folder, wells="A01")
    with open_file(os.path.join(folder, crop_files[0].replace(".crops.hdf5", ".h5")), "r") as f:
        cells = f["cell_segmentation/s0"][...]
    assert sorted(crops.table["label"]) == sorted(set(np.unique(cells)) - {0})
    row = crops.table.iloc[0]
    assert row["plate"] == "P3" and row["well"] == "A01" and row["site"] == 0
    intensities, mask = crops[0]
    assert intensities.shape == (3, 32, 32) and crops.channels[-1] == "marker" and intensities.dtype == np.uint16
    assert mask.shape == (32, 32) and mask.any()
    for r in crops.table[crops.table["touches_border"] == 1].itertuples():
        assert min(r.bbox_min_y, r.bbox_min_x) == 0 or max(r.bbox_max_y, r.bbox_max_x) == 128
    qc = os.path.join(folder, "P3_qc")
    assert sorted(os.listdir(qc)) == ["heatmap_n_cells.png", "heatmap_score.png", "segmentation_montage.png"]
    montage = np.asarray(Image.open(os.path.join(qc, "segmentation_montage.png")))
    assert montage.shape == (128, 256, 3)
    # A rerun redoes nothing.
    assert run(folder, raw, "--crop-size", "32", "--skip", "export_omezarr,export") == 0


def test_out_of_focus_image_is_flagged(tmp_path):
    import tifffile
    from scipy.ndimage import gaussian_filter

    raw, folder = str(tmp_path / "raw"), str(tmp_path / "PF")
    paths = write_demo_plate(raw, wells={"B02": 1.0}, sites=4, shape=(160, 160), n_nuclei=15)
    stack = tifffile.imread(paths[2])
    blurred = np.stack([gaussian_filter(c.astype(float), 4).astype(np.uint16) for c in stack])
    tifffile.imwrite(paths[2], blurred, photometric="minisblack")
    assert run(folder, raw, "--steps", "import,segment_nuclei,segment_cells,measure,aggregate", "--min-cells", "1") == 0
    with open_file(os.path.join(folder, "PF_table.hdf5"), "r") as f:
        images = read_plate_table(f, "images")
    assert images["out_of_focus"].tolist() == [0, 0, 1, 0]
    assert images["is_outlier"].tolist() == [0, 0, 1, 0]


def test_workflow_on_one_file_per_channel_plate(tmp_path):
    import tifffile

    from batchlib.synthetic import synthetic_site

    raw, folder = tmp_path / "raw", str(tmp_path / "PO")
    raw.mkdir()
    for row, col in ((2, 3), (2, 4)):
        for site in (1, 2):
            channels, _, _ = synthetic_site((128, 128), n_nuclei=10, seed=row * 10 + col + site)
            for ch, key in ((1, "nuclei"), (2, "cells"), (3, "marker")):
                tifffile.imwrite(raw / f"r{row:02d}c{col:02d}f{site:02d}p01-ch{ch}sk1fk1fl1.tiff", channels[key])
    code = cell_analysis_main(
        [
            "--folder",
            folder,
            "--input-folder",
            str(raw),
            "--scheme",
            "operetta",
            "--one-file-per-channel",
            "--channels",
            "1:nuclei,2:cells,3:marker",
            "--nuclei-method",
            "threshold",
            "--no-progress",
            "--skip",
            "export_omezarr",
        ]
    )
    assert code == 0
    with open_file(os.path.join(folder, "PO_table.hdf5"), "r") as f:
        wells = read_plate_table(f, "wells")
    assert wells["well_name"].tolist() == ["B03", "B04"] and wells["n_images"].tolist() == [2, 2]


def test_plate_jobs_with_workers_equal_serial(tmp_path):
    """With --n-jobs 2 the plate jobs read the images' tables and focus in the workers: same tables, same QC."""
    import pandas as pd
    from PIL import Image

    raw = str(tmp_path / "raw")
    write_demo_plate(raw, wells={"B02": 1.0, "B03": 2.0}, sites=2, shape=(160, 160), n_nuclei=15)
    folders = {n: str(tmp_path / f"n{n}" / "P3") for n in (1, 2)}
    for n_jobs, folder in folders.items():
        assert run(folder, raw, "--steps", "import,segment_nuclei,segment_cells,measure,aggregate,export,qc",
                   "--n-jobs", str(n_jobs)) == 0  # fmt: skip
    tables = {}
    for n_jobs, folder in folders.items():
        with open_file(os.path.join(folder, "P3_table.hdf5"), "r") as f:
            tables[n_jobs] = (read_plate_table(f, "images"), read_plate_table(f, "wells"))
    for serial, parallel in zip(tables[1], tables[2]):
        pd.testing.assert_frame_equal(serial, parallel)
    assert "focus_score" in tables[2][0] and len(tables[2][0]) == 4
    exports = [os.path.join(f, "P3_profiles") for f in folders.values()]
    assert sorted(os.listdir(exports[0])) == sorted(os.listdir(exports[1])) and len(os.listdir(exports[1])) == 5
    for name in ("P3_single_cell.parquet", "P3_well_profiles.parquet"):
        pd.testing.assert_frame_equal(*[pd.read_parquet(os.path.join(e, name)) for e in exports])
    for name in ("P3_single_cell.csv", "P3_well_profiles.csv"):
        pd.testing.assert_frame_equal(*[pd.read_csv(os.path.join(e, name)) for e in exports])
    for table in ("Image", "Nuclei", "Cells", "Cytoplasm"):
        with (
            sqlite3.connect(os.path.join(exports[0], "P3.sqlite")) as a,
            sqlite3.connect(os.path.join(exports[1], "P3.sqlite")) as b,
        ):
            pd.testing.assert_frame_equal(
                pd.read_sql(f"SELECT * FROM {table}", a), pd.read_sql(f"SELECT * FROM {table}", b)
            )
    for png in ("segmentation_montage.png", "heatmap_n_cells.png"):
        montages = [np.asarray(Image.open(os.path.join(f, "P3_qc", png))) for f in folders.values()]
        assert montages[0].shape[:2] == montages[1].shape[:2] and montages[0].any()
        np.testing.assert_array_equal(*montages)


def test_workflow_on_a_harmony_export_with_scheme_auto(tmp_path, caplog):
    import json
    import logging

    import tifffile

    from batchlib.synthetic import synthetic_site
    from tests.test_readers import write_harmony_index

    raw, folder = tmp_path / "raw", str(tmp_path / "PH")
    raw.mkdir()
    images = [(2, c, f, 1, ch) for c in (3, 4) for f in (1, 2) for ch in ("1", "2")]
    write_harmony_index(raw, images, names_in_maps=True, pixel_m=6.5e-7)
    for c in (3, 4):
        for f in (1, 2):
            channels, _, _ = synthetic_site((128, 128), n_nuclei=10, seed=c * 10 + f)
            for ch, key in (("1", "nuclei"), ("2", "cells")):
                tifffile.imwrite(raw / f"r02c{c:02d}f{f:02d}p01-ch{ch}sk1fk1fl1.tiff", channels[key])
    (raw / "r02c04f02p01-ch2sk1fk1fl1.tiff").unlink()  # listed in the index, not exported
    with caplog.at_level(logging.INFO, logger="Workflow"):
        code = run(
            folder,
            str(raw),
            "--scheme",
            "auto",
            "--channels",
            "HOECHST 33342:nuclei,Alexa 488:cells",
            "--ignore-invalid-inputs",
            "--omezarr",
        )
    assert code == 0
    assert "--scheme auto: harmony (Harmony index Index.xml)" in caplog.text
    with open_file(os.path.join(folder, "PH_table.hdf5"), "r") as f:
        images_table = read_plate_table(f, "images")
    # The field the index lists without its files is a row of its own, flagged.
    assert sorted(images_table["site_name"]) == ["B03-0001", "B03-0002", "B04-0001", "B04-0002"]
    missing = images_table.set_index("site_name")["missing_on_disk"]
    assert missing.to_dict() == {"B03-0001": 0, "B03-0002": 0, "B04-0001": 0, "B04-0002": 1}
    present = images_table[images_table["missing_on_disk"] == 0]
    np.testing.assert_allclose(present["pixel_size_um"], 0.65)
    with open_file(os.path.join(folder, "PH_table.hdf5"), "r") as f:
        wells = read_plate_table(f, "wells").set_index("well_name")
    assert wells["n_missing_images"].to_dict() == {"B03": 0, "B04": 1} and wells["n_images"].to_dict() == {
        "B03": 2,
        "B04": 1,
    }
    with open(os.path.join(folder, "batchlib", "ImportImages.status")) as f:
        status = json.load(f)
    assert list(status["missing"]) == ["WellB04_PointB04_0002_plate"]
    # The OME-Zarr export scales by the pixel size the index gives.
    attrs = zarr.open_group(os.path.join(folder, "PH.ome.zarr", "B", "3", "1"), mode="r").attrs.asdict()
    scale = attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale[-2:] == pytest.approx([0.65, 0.65])


def test_illumination_correction_option_adds_the_step_and_measures_with_the_field(tmp_path):
    import json

    raw, folder = str(tmp_path / "raw"), str(tmp_path / "PI")
    write_demo_plate(raw, wells={"C01": 1.0, "C02": 1.0}, sites=2, shape=(128, 128), n_nuclei=12)
    steps = "import,segment_nuclei,segment_cells,illumination,measure"
    assert run(folder, raw, "--steps", steps) == 0
    assert not os.path.exists(os.path.join(folder, "PI_illumination.hdf5"))  # none: the step does not run
    assert run(folder, raw, "--steps", steps, "--illumination-correction", "plate") == 0
    with open_file(os.path.join(folder, "PI_illumination.hdf5"), "r") as f:
        provenance = json.loads(f.attrs["batchlib_illumination"])
        assert sorted(f["illumination"]) == ["cells", "marker", "nuclei"]
    with open(os.path.join(folder, "batchlib", "MeasureObjects.status")) as f:
        status = json.load(f)
    # Measured again, now with the field.
    assert status["parameters"]["illumination_field"] == provenance["field_id"]
    assert status["last_run"]["processed"] == 4


def test_nuclei_only_plate_runs_every_step_on_the_nuclei(tmp_path, caplog):
    import logging

    raw, folder = str(tmp_path / "raw"), str(tmp_path / "PN")
    write_demo_plate(raw, wells={"C01": 1.0, "C02": 1.0}, sites=2, shape=(128, 128), n_nuclei=12)
    with caplog.at_level(logging.INFO, logger="Workflow"):
        assert run(folder, raw, "--channels", "DAPI:nuclei", "--omezarr") == 0
    assert "nuclei only; segment_cells is left out" in caplog.text
    containers = sorted(n for n in os.listdir(folder) if n.endswith(".h5"))
    with open_file(os.path.join(folder, containers[0]), "r") as f:
        assert "cell_segmentation" not in f and len(read_table(f, "nucleus_segmentation/default")) > 5
    with open_file(os.path.join(folder, "PN_table.hdf5"), "r") as f:
        images, wells = read_plate_table(f, "images"), read_plate_table(f, "wells")
    assert (images["n_cells"] > 5).all() and "median_Nuclei_Intensity_MeanIntensity_nuclei" in wells
    assert wells["score"].notna().all()  # the score is a nuclei feature here
    with sqlite3.connect(os.path.join(folder, "PN_profiles", "PN.sqlite")) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        n_nuclei = connection.execute("SELECT COUNT(*) FROM Nuclei").fetchone()[0]
    assert tables == {"Image", "Nuclei"} and n_nuclei == images["n_cells"].sum()
    assert os.listdir(os.path.join(folder, "PN_qc")) and os.path.isfile(
        os.path.join(folder, containers[0][:-3] + ".crops.hdf5")
    )
    labels = zarr.open_group(os.path.join(folder, "PN.ome.zarr", "C", "1", "0", "labels"), mode="r")
    assert list(labels.attrs["labels"]) == ["nucleus_segmentation"]


def test_cell_painting_five_channels_are_measured_in_every_compartment(tmp_path):
    import tifffile

    from batchlib.synthetic import synthetic_site

    raw, folder = tmp_path / "raw", str(tmp_path / "PC")
    raw.mkdir()
    for site in range(2):
        channels, _, _ = synthetic_site((128, 128), n_nuclei=12, seed=site)
        stack = np.stack(
            [
                channels["nuclei"],
                channels["marker"],
                channels["marker"] // 2,
                channels["cells"],
                channels["marker"] // 3,
            ]
        )
        tifffile.imwrite(raw / f"WellC01_PointC01_{site:04d}_ChannelDNA,ER,RNA,AGP,Mito_Seq{site:04d}.tiff", stack)
    steps = "import,segment_nuclei,segment_cells,measure,aggregate,export"
    assert (
        run(
            folder,
            str(raw),
            "--channels",
            "DNA:DNA,ER:ER,RNA:RNA,AGP:AGP,Mito:Mito",
            "--nuclei-channel",
            "DNA",
            "--cell-channel",
            "AGP",
            "--steps",
            steps,
        )
        == 0
    )
    with sqlite3.connect(os.path.join(folder, "PC_profiles", "PC.sqlite")) as connection:
        columns = {
            table: [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
            for table in ("Nuclei", "Cells", "Cytoplasm")
        }
    for compartment, names in columns.items():
        for channel in ("DNA", "ER", "RNA", "AGP", "Mito"):
            assert f"{compartment}_Intensity_MeanIntensity_{channel}" in names
