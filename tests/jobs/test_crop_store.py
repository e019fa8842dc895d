"""CropCells and IndexCrops: the crop store against the PNG layout, incremental updates, kill -9, export."""

import csv
import filecmp
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from batchlib import run_workflow
from batchlib.cli import main as cli_main
from batchlib.crops import CROP_FILE_EXT, CropFile, cut, export_png, open_crops, write_png
from batchlib.io import open_file, write_image
from batchlib.jobs.crops import CropCells, IndexCrops
from batchlib.synthetic import synthetic_site

CHANNELS = ["nuclei", "marker", "ratio"]  # uint16, uint8 and float32: each keeps its own PNG encoding
SIZE = 24


def container_name(well: str, site: int) -> str:
    return f"Well{well}_Point{well}_{site:04d}_ChannelDAPI_Seq{site:04d}.h5"


def write_container(folder, well: str, site: int, seed: int, shape=(96, 128)) -> str:
    """A container with cell labels and three channels of different dtypes, cells touching the border too."""
    channels, _, labels = synthetic_site(shape, n_nuclei=9, seed=seed)
    path = os.path.join(folder, container_name(well, site))
    with open_file(path, "a") as f:
        write_image(f, "cell_segmentation", labels.astype(np.uint32), is_label=True)
        write_image(f, "nuclei", channels["nuclei"])
        write_image(f, "marker", (channels["marker"] >> 8).astype(np.uint8))
        ratio = channels["marker"].astype(np.float32) / (channels["nuclei"].astype(np.float32) + 1)
        ratio[0, :3] = np.nan  # a float channel with non-finite pixels
        write_image(f, "ratio", ratio)
    return path


@pytest.fixture
def plate(tmp_path):
    folder = tmp_path / "P7"
    folder.mkdir()
    for i, (well, site) in enumerate([("A01", 0), ("A01", 1), ("B03", 0), ("B03", 1)]):
        write_container(str(folder), well, site, seed=i)
    return str(folder)


def store_jobs(**kwargs):
    return [CropCells(CHANNELS, size=SIZE, **kwargs), IndexCrops()]


def reference_png_folder(container: str, out: str, plate: str, well: str, site: int) -> None:
    """The PNG layout as CropCells wrote it before the store: a loop over cells with `cut` and `write_png`."""
    from skimage.measure import regionprops

    with open_file(container, "r") as f:
        cells = f["cell_segmentation/s0"][...]
        images = {c: f[f"{c}/s0"][...] for c in CHANNELS}
    os.makedirs(out)
    records = []
    for region in regionprops(cells):
        centre = np.array([np.mean(region.coords[:, 0]), np.mean(region.coords[:, 1])])
        corner = np.round(centre).astype(np.int64) - SIZE // 2
        label = region.label
        write_png(os.path.join(out, f"{label}_mask.png"), cut(cells, corner, SIZE) == label)
        for c in CHANNELS:
            write_png(os.path.join(out, f"{label}_{c}.png"), cut(images[c], corner, SIZE))
        y0, x0, y1, x1 = region.bbox
        touches = int(y0 == 0 or x0 == 0 or y1 == cells.shape[0] or x1 == cells.shape[1])
        records.append(
            [plate, well, site, label, *np.round(centre, 3), y0, x0, y1, x1, touches, f"{label}_mask.png"]
            + [f"{label}_{c}.png" for c in CHANNELS]
        )
    with open(os.path.join(out, "metadata.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "plate",
                "well",
                "site",
                "label",
                "centroid_y",
                "centroid_x",
                "bbox_min_y",
                "bbox_min_x",
                "bbox_max_y",
                "bbox_max_x",
                "touches_border",
                "mask_file",
            ]
            + [f"{c}_file" for c in CHANNELS]
        )
        writer.writerows(records)


def same_tree(a: str, b: str) -> bool:
    """The two folders hold the same file names with byte-identical contents."""
    names = sorted(os.listdir(a))
    if names != sorted(os.listdir(b)):
        return False
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    return not mismatch and not errors


def test_png_format_is_the_former_layout_byte_for_byte(plate, tmp_path):
    run_workflow("crops", plate, [CropCells(CHANNELS, size=SIZE, format="png")], progress=False)
    reference = tmp_path / "reference"
    for name in sorted(n for n in os.listdir(plate) if n.endswith(".h5")):
        well, site = name[4:7], int(name.split("_")[2])
        out = str(reference / name.replace(".h5", ".crops"))
        reference_png_folder(os.path.join(plate, name), out, "P7", well, site)
        assert same_tree(out, os.path.join(plate, name.replace(".h5", ".crops"))), name


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_store_holds_the_png_crops_pixel_for_pixel_and_exports_them_byte_for_byte(plate, tmp_path, compression):
    png_plate = str(tmp_path / "png" / "P7")
    os.makedirs(os.path.dirname(png_plate))
    import shutil

    shutil.copytree(plate, png_plate)
    run_workflow("crops", png_plate, [CropCells(CHANNELS, size=SIZE, format="png")], progress=False)
    run_workflow("crops", plate, store_jobs(compression=compression), progress=False)

    crops = open_crops(plate)
    assert crops.channels == CHANNELS and crops.size == SIZE
    index = pd.read_parquet(os.path.join(plate, "P7_crops.parquet"))
    assert len(crops) == len(index) > 20 and index["touches_border"].sum() > 0
    for position, row in enumerate(crops.table.itertuples()):
        folder = os.path.join(png_plate, row.file.replace(CROP_FILE_EXT, ".crops"))
        intensities, mask = crops[position]
        png_mask = np.asarray(Image.open(os.path.join(folder, f"{row.label}_mask.png"))) > 0
        np.testing.assert_array_equal(mask.astype(bool), png_mask)
        for c, channel in enumerate(CHANNELS[:2]):  # the integer channels are stored as they are
            png = np.asarray(Image.open(os.path.join(folder, f"{row.label}_{channel}.png")))
            np.testing.assert_array_equal(intensities[c], png)
    # The metadata equal the PNG layout's metadata.csv files.
    frames = []
    for name in sorted(n for n in os.listdir(png_plate) if n.endswith(".crops")):
        frames.append(pd.read_csv(os.path.join(png_plate, name, "metadata.csv")))
    png_metadata = pd.concat(frames, ignore_index=True)
    columns = ["well", "site", "label", "bbox_min_y", "bbox_min_x", "bbox_max_y", "bbox_max_x", "touches_border"]
    pd.testing.assert_frame_equal(crops.table[columns].reset_index(drop=True), png_metadata[columns], check_dtype=False)
    np.testing.assert_allclose(crops.table["centroid_y"], png_metadata["centroid_y"], atol=5e-4)

    exported = str(tmp_path / "exported")
    assert cli_main(["export-crops", plate, exported]) == 0
    for name in os.listdir(exported):
        assert same_tree(os.path.join(exported, name), os.path.join(png_plate, name)), name
    assert len(os.listdir(exported)) == 4


def test_export_of_some_wells(plate, tmp_path):
    run_workflow("crops", plate, store_jobs(), progress=False)
    written = export_png(plate, str(tmp_path / "out"), wells=["B03"])
    assert [os.path.basename(p)[:10] for p in written] == ["WellB03_Po", "WellB03_Po"]


def store_contents(plate: str) -> dict:
    """Every crop file's arrays and cell rows, and the plate index."""
    found = {"index": pd.read_parquet(os.path.join(plate, "P7_crops.parquet"))}
    for name in sorted(os.listdir(plate)):
        if name.endswith(CROP_FILE_EXT):
            with CropFile(os.path.join(plate, name)) as f:
                found[name] = (*f.read(), f.table())
    return found


def assert_same_store(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    pd.testing.assert_frame_equal(a["index"], b["index"])
    for name in a:
        if name != "index":
            np.testing.assert_array_equal(a[name][0], b[name][0])
            np.testing.assert_array_equal(a[name][1], b[name][1])
            pd.testing.assert_frame_equal(a[name][2], b[name][2])


def test_new_images_append_and_a_changed_image_rewrites_only_its_crops(plate, tmp_path):
    import shutil

    first = sorted(n for n in os.listdir(plate) if n.endswith(".h5"))
    later = os.path.join(str(tmp_path), "later")
    os.makedirs(later)
    shutil.move(os.path.join(plate, first[-1]), os.path.join(later, first[-1]))  # B03 site 1 arrives later
    jobs = store_jobs()
    run_workflow("crops", plate, jobs, progress=False)
    assert len(open_crops(plate)) > 0 and len(open_crops(plate, wells="B03", sites=1)) == 0
    mtimes = {n: os.stat(os.path.join(plate, n)).st_mtime_ns for n in os.listdir(plate) if n.endswith(CROP_FILE_EXT)}

    shutil.move(os.path.join(later, first[-1]), os.path.join(plate, first[-1]))
    results = run_workflow("crops", plate, jobs, progress=False)
    assert results["CropCells"].processed == 1 and results["IndexCrops"].processed == 1
    assert len(open_crops(plate, wells="B03", sites=1)) > 0
    for name, mtime in mtimes.items():
        assert os.stat(os.path.join(plate, name)).st_mtime_ns == mtime, f"{name} was rewritten"

    # A changed segmentation of one image: only its crop file is written again.
    changed = os.path.join(plate, first[0])
    with open_file(changed, "a") as f:
        labels = f["cell_segmentation/s0"][...]
        labels[labels == labels.max()] = 0  # one cell fewer
        write_image(f, "cell_segmentation", labels, is_label=True)
    before = len(open_crops(plate, wells="A01", sites=0))
    results = run_workflow("crops", plate, jobs, progress=False)
    assert results["CropCells"].processed == 1
    assert len(open_crops(plate, wells="A01", sites=0)) == before - 1
    for name, mtime in mtimes.items():
        if not name.startswith(first[0][:-3]):
            assert os.stat(os.path.join(plate, name)).st_mtime_ns == mtime, f"{name} was rewritten"

    # Equal to the store of a fresh run on the final plate.
    fresh = str(tmp_path / "fresh" / "P7")
    shutil.copytree(plate, fresh, ignore=shutil.ignore_patterns("*.crops.hdf5", "*.parquet", "batchlib"))
    run_workflow("crops", fresh, store_jobs(), progress=False)
    assert_same_store(store_contents(plate), store_contents(fresh))


KILL_SCRIPT = """
import sys, time
import batchlib.jobs.crops as crops
from batchlib import run_workflow
from batchlib.jobs.crops import CropCells, IndexCrops

delay = float(sys.argv[2])
write = crops.write_crop_arrays

def slow_write(*args, **kwargs):
    time.sleep(delay)
    write(*args, **kwargs)

crops.write_crop_arrays = slow_write
run_workflow("crops", sys.argv[1], [CropCells({channels!r}, size={size}), IndexCrops()], progress=False)
"""


def test_kill_9_during_the_crop_step_then_rerun_gives_the_same_store(tmp_path):
    import shutil

    plate = str(tmp_path / "P7")
    os.makedirs(plate)
    for i in range(16):
        write_container(plate, f"A{i // 4 + 1:02d}", i % 4, seed=i, shape=(64, 64))
    reference = str(tmp_path / "reference" / "P7")
    shutil.copytree(plate, reference)
    run_workflow("crops", reference, store_jobs(), progress=False)

    script = tmp_path / "crop_script.py"
    script.write_text(KILL_SCRIPT.format(channels=CHANNELS, size=SIZE))
    proc = subprocess.Popen([sys.executable, str(script), plate, "0.1"], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = [n for n in os.listdir(plate) if n.endswith(CROP_FILE_EXT)]
        if len(done) >= 4:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    done = [n for n in os.listdir(plate) if n.endswith(CROP_FILE_EXT)]
    assert 4 <= len(done) < 16, "the kill must land in the middle of the crop step"

    subprocess.run([sys.executable, str(script), plate, "0"], check=True, timeout=120)
    assert_same_store(store_contents(plate), store_contents(reference))
    assert not [n for n in os.listdir(plate) if n.startswith(".batchlib-tmp")]


def test_bad_options_name_themselves():
    from batchlib.errors import ConfigError

    with pytest.raises(ConfigError, match="--crop-format"):
        CropCells(CHANNELS, format="tiff")
    with pytest.raises(ConfigError, match="--crop-compression"):
        CropCells(CHANNELS, compression="lz4")


def test_index_job_object_reads_only_new_and_changed_crop_files(plate, monkeypatch):
    import batchlib.jobs.crops as crop_jobs

    crop, index = store_jobs()
    run_workflow("crops", plate, [crop, index], progress=False)
    read = []
    real = crop_jobs.read_cells
    monkeypatch.setattr(crop_jobs, "read_cells", lambda path: read.append(os.path.basename(path)) or real(path))

    container = sorted(n for n in os.listdir(plate) if n.endswith(".h5"))[1]
    with open_file(os.path.join(plate, container), "a") as f:
        labels = f["cell_segmentation/s0"][...]
        labels[labels == labels.max()] = 0
        write_image(f, "cell_segmentation", labels, is_label=True)
    write_container(plate, "C05", 0, seed=11)
    results = run_workflow("crops", plate, [crop, index], progress=False)
    assert results["CropCells"].processed == 2 and results["IndexCrops"].processed == 1
    assert sorted(read) == sorted(
        [container.replace(".h5", CROP_FILE_EXT), container_name("C05", 0)[:-3] + CROP_FILE_EXT]
    )
    monkeypatch.setattr(crop_jobs, "read_cells", real)
    cached = pd.read_parquet(os.path.join(plate, "P7_crops.parquet"))
    os.remove(os.path.join(plate, "P7_crops.parquet"))
    run_workflow("crops", plate, store_jobs(), progress=False)  # new job objects: everything read again
    pd.testing.assert_frame_equal(cached, pd.read_parquet(os.path.join(plate, "P7_crops.parquet")))


def test_the_workflow_options_offer_what_the_crop_job_accepts():
    # The parser keeps its choices literal (building it must not import pandas); they must not drift apart.
    from batchlib.cell_analysis import cell_analysis_parser
    from batchlib.crops import COMPRESSIONS
    from batchlib.jobs.crops import CROP_FORMATS

    choices = {action.dest: set(action.choices or ()) for action in cell_analysis_parser()._actions}
    assert choices["crop_format"] == set(CROP_FORMATS)
    assert choices["crop_compression"] == set(COMPRESSIONS)
