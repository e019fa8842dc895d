"""Import of raw TIFFs and the segmentation jobs."""

import os

import numpy as np
import pandas as pd
import pytest
import tifffile

from batchlib import run_workflow
from batchlib.demo import write_demo_plate
from batchlib.io import image_attrs, open_file, read_image
from batchlib.jobs.importer import ImportImages
from batchlib.jobs.segmentation import SegmentCells, SegmentNucleiThreshold, seeded_cells, threshold_nuclei
from batchlib.synthetic import synthetic_site

CHANNELS = {"DAPI": "nuclei", "WF_GFP": "cells", "TRITC": "marker"}


@pytest.fixture
def raw_plate(tmp_path):
    raw = tmp_path / "raw"
    paths = write_demo_plate(raw, sites=2, shape=(128, 128), n_nuclei=12)
    return str(tmp_path / "plate"), str(raw), paths


def run(folder, raw, jobs, **kwargs):
    return run_workflow("wf", folder, jobs, input_folder=raw, progress=False, **kwargs)


@pytest.mark.parametrize("ext", [".h5", ".n5", ".zarr"])
def test_import_writes_one_container_per_image(raw_plate, ext):
    folder, raw, paths = raw_plate
    result = run(folder, raw, [ImportImages(CHANNELS, output_ext=ext)])["ImportImages"]
    assert result.processed == 4
    stack = tifffile.imread(paths[1])
    container = os.path.join(folder, os.path.basename(paths[1]).replace(".tiff", ext))
    with open_file(container, "r") as f:
        for i, name in enumerate(["nuclei", "cells", "marker"]):
            np.testing.assert_array_equal(read_image(f, name), stack[i])
        assert image_attrs(f, "nuclei")["ChannelInformation"] == "DAPI"
        assert f.attrs["ImageInformation"] == "C01-0001" and f.attrs["WellInformation"] == "C01"


def test_channel_mapping_drops_channels(raw_plate):
    folder, raw, paths = raw_plate
    run(folder, raw, [ImportImages({"DAPI": "nuclei", "WF_GFP": None})])
    with open_file(os.path.join(folder, os.path.basename(paths[0]).replace(".tiff", ".h5")), "r") as f:
        assert f.keys() == ["nuclei"]


def test_bad_raw_files_are_invalid_and_the_rest_processed(raw_plate):
    folder, raw, _ = raw_plate
    with open(os.path.join(raw, "WellC02_PointC02_0009_ChannelDAPI,WF_GFP,TRITC_Seq0100.tiff"), "wb") as f:
        f.write(b"not a tiff at all")
    tifffile.imwrite(
        os.path.join(raw, "WellC02_PointC02_0010_ChannelDAPI,WF_GFP,TRITC_Seq0101.tiff"),
        np.zeros((3, 64, 64), np.uint16),
        photometric="minisblack",
    )
    tifffile.imwrite(
        os.path.join(raw, "WellC02_PointC02_0011_ChannelDAPI,WF_GFP,TRITC_Seq0102.tiff"),
        np.zeros((3, 128, 128), np.float32),
        photometric="minisblack",
    )
    tifffile.imwrite(
        os.path.join(raw, "random_name.tiff"), np.zeros((3, 128, 128), np.uint16), photometric="minisblack"
    )
    results = run(folder, raw, [ImportImages(CHANNELS)], ignore_invalid_inputs=True)
    result = results["ImportImages"]
    assert result.processed == 4 and result.invalid == 4
    reasons = result.invalid_files
    assert "not a readable TIFF" in reasons["WellC02_PointC02_0009_ChannelDAPI,WF_GFP,TRITC_Seq0100.tiff"]
    assert "(3, 64, 64)" in reasons["WellC02_PointC02_0010_ChannelDAPI,WF_GFP,TRITC_Seq0101.tiff"]
    assert "float32" in reasons["WellC02_PointC02_0011_ChannelDAPI,WF_GFP,TRITC_Seq0102.tiff"]
    assert "does not match" in reasons["random_name.tiff"]


def test_threshold_segmentation_finds_the_nuclei():
    channels, truth, _ = synthetic_site((256, 256), n_nuclei=25, seed=3)
    labels = threshold_nuclei(channels["nuclei"])
    from stardist.matching import matching

    assert matching(truth, labels, thresh=0.5).f1 > 0.7


def test_seeded_cells_keep_nucleus_ids():
    channels, nuclei, _ = synthetic_site((256, 256), n_nuclei=25, seed=4)
    cells = seeded_cells(nuclei, channels["cells"])
    assert set(np.unique(cells)) == set(np.unique(nuclei))
    inside = nuclei > 0
    np.testing.assert_array_equal(cells[inside], nuclei[inside])


def test_classical_pipeline_on_a_plate(raw_plate):
    folder, raw, _ = raw_plate
    jobs = [ImportImages(CHANNELS), SegmentNucleiThreshold(), SegmentCells()]
    results = run(folder, raw, jobs)
    assert [r.processed for r in results.values()] == [4, 4, 4]
    name = sorted(n for n in os.listdir(folder) if n.endswith(".h5"))[0]
    with open_file(os.path.join(folder, name), "r") as f:
        nuclei, cells = read_image(f, "nucleus_segmentation"), read_image(f, "cell_segmentation")
        assert nuclei.max() > 3 and image_attrs(f, "cell_segmentation")["Color"] == "Glasbey"
        assert set(np.unique(cells)) <= set(np.unique(nuclei))
    assert [r.processed for r in run(folder, raw, jobs).values()] == [0, 0, 0]


def test_cell_job_segments_a_batch_in_threads_as_one_image_at_a_time(raw_plate, monkeypatch):
    import threading
    import time

    import batchlib.jobs.segmentation as segmentation

    folder, raw, _ = raw_plate
    run(folder, raw, [ImportImages(CHANNELS), SegmentNucleiThreshold()])
    threads = set()
    real = segmentation.seeded_cells

    def seeded_cells_noting_its_thread(*args, **kwargs):
        threads.add(threading.current_thread().name)
        time.sleep(0.05)  # long enough for the next image to go to the other thread
        return real(*args, **kwargs)

    monkeypatch.setattr(segmentation, "seeded_cells", seeded_cells_noting_its_thread)
    readers = set()
    real_read = segmentation.read_image_later

    def read_image_noting_its_thread(*args, **kwargs):
        readers.add(threading.current_thread().name)
        return real_read(*args, **kwargs)

    monkeypatch.setattr(segmentation, "read_image_later", read_image_noting_its_thread)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the cap a worker gets; the batch's images go to two threads
    assert run_workflow("wf", folder, [SegmentCells()], progress=False)["SegmentCells"].processed == 4
    assert len(threads) == 2 and all(name.startswith("batchlib-compute") for name in threads)
    assert readers == {threading.current_thread().name}  # containers only in the calling thread (h5py)
    for name in sorted(n for n in os.listdir(folder) if n.endswith(".h5")):
        with open_file(os.path.join(folder, name), "r") as f:
            expected = real(read_image(f, "nucleus_segmentation"), read_image(f, "cells"))
            np.testing.assert_array_equal(read_image(f, "cell_segmentation"), expected)


def test_measure_job_writes_cell_tables(raw_plate):
    from batchlib.io import read_table
    from batchlib.jobs.measure import MeasureObjects
    from batchlib.measure import measure_objects

    folder, raw, _ = raw_plate
    jobs = [
        ImportImages(CHANNELS),
        SegmentNucleiThreshold(),
        SegmentCells(),
        MeasureObjects({"nuclei": "DAPI", "marker": "GFP"}),
    ]
    results = run(folder, raw, jobs)
    assert results["MeasureObjects"].processed == 4
    name = sorted(n for n in os.listdir(folder) if n.endswith(".h5"))[0]
    with open_file(os.path.join(folder, name), "r") as f:
        nuclei_table = read_table(f, "nucleus_segmentation/default")
        cells_table = read_table(f, "cell_segmentation/default")
        cytoplasm = read_table(f, "cell_segmentation/cytoplasm")
        expected = measure_objects(
            read_image(f, "nucleus_segmentation"),
            {"DAPI": read_image(f, "nuclei"), "GFP": read_image(f, "marker")},
            "Nuclei",
        )
    assert nuclei_table.columns[0] == "label_id" and "Nuclei_Intensity_MeanIntensity_GFP" in nuclei_table
    assert "Cells_AreaShape_Area" in cells_table and "Cytoplasm_Intensity_MedianIntensity_DAPI" in cytoplasm
    np.testing.assert_allclose(
        nuclei_table.drop(columns="label_id").to_numpy(), expected.drop(columns="label_id").to_numpy()
    )
    # Cytoplasm area = cell area - nucleus area, object by object.
    merged = cells_table.merge(nuclei_table, on="label_id").merge(cytoplasm, on="label_id", how="left")
    np.testing.assert_array_equal(
        merged["Cells_AreaShape_Area"] - merged["Nuclei_AreaShape_Area"], merged["Cytoplasm_AreaShape_Area"].fillna(0)
    )
    # The batch was measured in threads: every image's tables are those of its own labels and pixels.
    for name in sorted(n for n in os.listdir(folder) if n.endswith(".h5")):
        with open_file(os.path.join(folder, name), "r") as f:
            expected = measure_objects(
                read_image(f, "cell_segmentation"),
                {"DAPI": read_image(f, "nuclei"), "GFP": read_image(f, "marker")},
                "Cells",
            )
            pd.testing.assert_frame_equal(read_table(f, "cell_segmentation/default"), expected, check_dtype=False)


@pytest.mark.parametrize(
    "scheme, names",
    [
        ("operetta", ["r03c05f{site:02d}p01-ch{ch}sk1fk1fl1.tiff"]),
        ("imagexpress", ["PLATE7_C05_s{site}_w{ch}.tif"]),
    ],
)
def test_one_file_per_channel_is_grouped_by_site(tmp_path, scheme, names):
    raw, folder = tmp_path / "raw", str(tmp_path / "plate")
    raw.mkdir()
    truth = {}
    for site in (1, 2):
        channels, _, _ = synthetic_site((96, 96), n_nuclei=6, seed=site)
        for ch, key in ((1, "nuclei"), (2, "marker"), (3, "cells")):
            tifffile.imwrite(raw / names[0].format(site=site, ch=ch), channels[key])
            truth[(site, key)] = channels[key]
    job = ImportImages({"1": "nuclei", "2": "marker"}, input_pattern="*.tif*", scheme=scheme, one_file_per_channel=True)
    result = run(folder, str(raw), [job])["ImportImages"]
    assert result.processed == 2
    plate = "PLATE7" if scheme == "imagexpress" else "plate"
    for site in (1, 2):
        with open_file(os.path.join(folder, f"WellC05_PointC05_{site:04d}_{plate}.h5"), "r") as f:
            assert f.keys() == ["marker", "nuclei"]
            np.testing.assert_array_equal(read_image(f, "nuclei"), truth[(site, "nuclei")])
            np.testing.assert_array_equal(read_image(f, "marker"), truth[(site, "marker")])
            assert f.attrs["ImageInformation"] == f"C05-{site:04d}"
    # A changed channel file re-imports its site only.
    os.remove(raw / names[0].format(site=2, ch=2))
    tifffile.imwrite(raw / names[0].format(site=2, ch=2), truth[(1, "marker")])
    again = run(folder, str(raw), [job])["ImportImages"]
    assert (again.processed, again.skipped) == (1, 1)
