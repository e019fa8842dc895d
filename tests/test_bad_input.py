"""One bad file never poisons a plate: each kind of bad raw input, through the whole cell-analysis workflow.

Every case starts from the same small plate, already processed (4 images),
adds one bad file, and checks: the exit code; a message naming the file and
the reason; with ``--ignore-invalid-inputs`` every other image through every
step; nothing computed before was redone; and after the file is fixed or
removed, a plain rerun (no ``--force-recompute``) processes exactly what it
should.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import tifffile

from batchlib.cell_analysis import cell_analysis_main
from batchlib.demo import raw_file_name, write_demo_plate
from batchlib.io import open_file, read_image, read_plate_table
from batchlib.report import explain, folder_status
from batchlib.synthetic import synthetic_site

SHAPE = (96, 96)
GOOD_WELLS = {"C01": 1.0, "C02": 2.5}
PER_IMAGE_JOBS = ["ImportImages", "SegmentNucleiThreshold", "SegmentCells", "MeasureObjects", "CropCells"]
PLATE_JOBS = ["AggregateTables", "ExportProfiles", "QualityControl", "OmeZarrExport"]


def options(folder: str, raw: str) -> list[str]:
    return ["--folder", folder, "--input-folder", raw, "--nuclei-method", "threshold", "--no-progress"]


def run(folder: str, raw: str, *extra: str) -> int:
    return cell_analysis_main([*options(folder, raw), "--min-cells", "1", *extra])


def stack(seed: int = 7, dtype=np.uint16, shape=SHAPE) -> np.ndarray:
    channels, _, _ = synthetic_site(shape, 8, 1.0, seed=seed)
    return np.stack([channels["nuclei"], channels["cells"], channels["marker"]]).astype(dtype)


def write_tiff(path: str, data: np.ndarray) -> None:
    tifffile.imwrite(path, data, photometric="minisblack", metadata={"axes": "CYX" if data.ndim == 3 else "YX"})


def workflow_status(folder: str) -> dict:
    with open(os.path.join(folder, "batchlib", "CellAnalysisWorkflow.status")) as f:
        return json.load(f)["jobs"]


def job_status(folder: str, job: str) -> dict:
    with open(os.path.join(folder, "batchlib", f"{job}.status")) as f:
        return json.load(f)


def image_names(folder: str) -> list[str]:
    with open_file(os.path.join(folder, f"{os.path.basename(folder)}_table.hdf5"), "r") as f:
        return sorted(read_plate_table(f, "images")["image_name"])


def log_text(folder: str) -> str:
    """Everything the runs on this plate logged (the workflow's log file)."""
    with open(os.path.join(folder, "batchlib", "CellAnalysisWorkflow.log"), encoding="utf-8") as f:
        return f.read()


def omezarr_fields(folder: str) -> int:
    """Fields of the plate's OME-Zarr export (folders <row>/<column>/<field>)."""
    plate = os.path.join(folder, f"{os.path.basename(folder)}.ome.zarr")
    return sum(
        1
        for row in os.scandir(plate)
        if row.is_dir()
        for column in os.scandir(row.path)
        if column.is_dir()
        for field in os.scandir(column.path)
        if field.is_dir() and field.name.isdigit()
    )


def stamps(folder: str) -> dict[str, int]:
    return {n: os.stat(os.path.join(folder, n)).st_mtime_ns for n in os.listdir(folder) if n.endswith(".h5")}


@pytest.fixture(scope="module")
def processed_plate(tmp_path_factory):
    """A plate of 4 images run through the whole workflow once (copied by each test)."""
    root = tmp_path_factory.mktemp("template")
    raw, folder = str(root / "raw"), str(root / "P")
    write_demo_plate(raw, wells=GOOD_WELLS, sites=2, shape=SHAPE, n_nuclei=8)
    assert run(folder, raw, "--omezarr") == 0  # later runs keep the plate's OME-Zarr current by themselves
    return root


@pytest.fixture
def plate(processed_plate, tmp_path):
    root = tmp_path / "plate"
    shutil.copytree(processed_plate, root)  # keeps mtimes: the copy is as up to date as the template
    return str(root / "P"), str(root / "raw")


# ----------------------------------------------------------------------------- the kinds of bad input
NEW = raw_file_name("C03", 0, 100)  # a name that fits the plate: well C03, site 0
FIRST = raw_file_name("A01", 0, 99)  # sorts before every good image


def _write_bytes(data: bytes) -> Callable[[str], None]:
    def write(path: str) -> None:
        with open(path, "wb") as f:
            f.write(data)

    return write


def _truncate(path: str) -> None:
    write_tiff(path, stack())
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 3)


def _huge_header(path: str) -> None:
    """A TIFF whose header claims 100000 x 100000 pixels (the pixels are not there)."""
    tifffile.imwrite(path, np.zeros((8, 8), np.uint16))
    with tifffile.TiffFile(path, mode="r+") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(100_000)
        tif.pages[0].tags["ImageLength"].overwrite(100_000)


def _dangling_link(path: str) -> None:
    os.symlink(os.path.join(os.path.dirname(path), "gone", "image.tiff"), path)


def _restore_link_target(path: str) -> None:
    target = os.readlink(path)
    os.makedirs(os.path.dirname(target))
    write_tiff(target, stack())


@dataclass
class Kind:
    """One kind of bad input: how to make it, what batchlib says, how to cure it."""

    name: str
    file: str
    make: Callable[[str], None]
    reason: str  # part of the message, besides the file's name
    fix: Callable[[str], None] | None  # None: the cure is to remove the file
    imported_after_fix: int  # files ImportImages processes on the plain rerun after the cure
    logged: str = ""  # a warning the log shows with the file's name, besides the reason


KINDS = [
    Kind("zero-byte file", NEW, _write_bytes(b""), "is not a readable TIFF", None, 0),
    Kind(
        "text named .tiff",
        NEW,
        _write_bytes(b"acquisition log\n"),
        "is not a readable TIFF",
        lambda p: write_tiff(p, stack()),
        1,
    ),
    Kind(
        "wrong shape",
        NEW,
        lambda p: write_tiff(p, stack(shape=(64, 64))),
        "has shape (3, 64, 64), but 4 of the plate's 5 images have shape (3, 96, 96) (checked again on every run",
        lambda p: write_tiff(p, stack()),
        1,
    ),
    Kind(
        "wrong dtype",
        NEW,
        lambda p: write_tiff(p, stack(dtype=np.float32)),
        "dtype float32",
        lambda p: write_tiff(p, stack()),
        1,
    ),
    Kind(
        "name not matching the scheme (a thumbnail sorting first)",
        "000_thumbnail.tiff",
        lambda p: write_tiff(p, np.zeros((1, 1), np.uint8)),
        "does not match the filename scheme batchlib (e.g. WellC01_PointC01_0000_ChannelDAPI,WF_GFP,TRITC_Seq0000",
        None,
        0,
    ),
    Kind(
        "1x1 image in the scheme, sorting first",
        FIRST,
        lambda p: write_tiff(p, np.zeros((1, 1), np.uint8)),
        "has shape (1, 1, 1), dtype uint8, channels channel0, but 4 of the plate's 5 images have shape (3, 96, 96), "
        "dtype uint16, channels DAPI,WF_GFP,TRITC",
        lambda p: write_tiff(p, stack()),
        1,
    ),
    Kind("folder named like an image", NEW, os.mkdir, "is a folder, not an image file", None, 0),
    Kind("dangling symbolic link", NEW, _dangling_link, "which does not exist", _restore_link_target, 1),
    Kind(
        "header claiming 100000 x 100000, sorting first",
        FIRST,
        _huge_header,
        "claims an image of 1 x 100000 x 100000 uint16 (18.6 GiB), more than the limit of 4 GiB",
        lambda p: (os.remove(p), write_tiff(p, stack())),
        1,
    ),
    Kind(
        "truncated file",
        NEW,
        _truncate,
        "cannot be read (cut short or corrupt?)",
        lambda p: write_tiff(p, stack()),
        1,
        # tifffile's own warning, which names no file, is reported with the file it is about
        logged=f"ImportImages: {NEW}: tifffile: <tifffile.TiffPages @8> invalid page offset",
    ),
    Kind(
        "missing channel",
        raw_file_name("C03", 0, 100).replace("DAPI,WF_GFP,TRITC", "DAPI,WF_GFP,CY5"),
        lambda p: write_tiff(p, stack()),
        "has channels DAPI,WF_GFP,CY5, but 4 of the plate's 5 images have channels DAPI,WF_GFP,TRITC",
        None,
        0,
    ),
    Kind(
        "duplicate well and site",
        raw_file_name("C01", 0, 200),
        lambda p: write_tiff(p, stack()),
        f"is a second file for well C01, site 0: {raw_file_name('C01', 0, 0)} is imported",
        None,
        0,
    ),
]


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_bad_input_is_isolated_reported_and_heals(plate, kind):
    folder, raw = plate
    before = stamps(folder)
    good = image_names(folder)
    path = os.path.join(raw, kind.file)
    kind.make(path)
    logged = len(log_text(folder))

    # Without --ignore-invalid-inputs: exit 1, one clear message naming the file, the good images untouched.
    assert run(folder, raw) == 1
    err = log_text(folder)[logged:]
    message = job_status(folder, "ImportImages")["invalid"][kind.file]
    assert kind.file in message and kind.reason in message, message
    assert kind.file in err and kind.reason in err
    assert kind.logged in err
    assert workflow_status(folder)["SegmentNucleiThreshold"]["state"] == "not_run"

    # With it: every other image goes through every step, nothing done before is redone.
    assert run(folder, raw, "--ignore-invalid-inputs") == 0
    assert stamps(folder) == before
    assert image_names(folder) == good and omezarr_fields(folder) == 4  # every output agrees on the images
    jobs = workflow_status(folder)
    assert [jobs[j]["done"] for j in PER_IMAGE_JOBS] == [4] * 5
    assert jobs["ImportImages"]["invalid"] == 1 and all(jobs[j]["state"] == "processed" for j in PLATE_JOBS)

    # Once the file is fixed or removed, a plain rerun does exactly what is needed.
    if kind.fix is None:
        os.remove(path) if not os.path.isdir(path) else os.rmdir(path)
    else:
        kind.fix(path)
    assert run(folder, raw) == 0
    jobs = workflow_status(folder)
    assert jobs["ImportImages"]["processed_now"] == kind.imported_after_fix
    assert [jobs[j]["processed_now"] for j in PER_IMAGE_JOBS[1:]] == [kind.imported_after_fix] * 4
    assert job_status(folder, "ImportImages")["invalid"] == {}
    assert len(image_names(folder)) == 4 + kind.imported_after_fix
    assert {n: s for n, s in stamps(folder).items() if n in before} == before


def test_valid_but_unusual_files_go_through(plate):
    """A name with spaces and non-ASCII letters, and an all-zero image: processed, the empty one flagged."""
    folder, raw = plate
    unusual = raw_file_name("C03", 0, 100).replace(".tiff", " (copie é).tiff")
    write_tiff(os.path.join(raw, unusual), stack())
    empty = raw_file_name("C03", 1, 101)
    write_tiff(os.path.join(raw, empty), np.zeros((3, *SHAPE), np.uint16))
    logged = len(log_text(folder))
    assert run(folder, raw) == 0
    err = log_text(folder)[logged:]
    assert f"{empty}: channel nuclei is constant (every pixel 0)" in err
    jobs = workflow_status(folder)
    assert [jobs[j]["processed_now"] for j in PER_IMAGE_JOBS] == [2] * 5
    with open_file(os.path.join(folder, f"{os.path.basename(folder)}_table.hdf5"), "r") as f:
        images = read_plate_table(f, "images").set_index("image_name")
    assert images.loc[os.path.splitext(unusual)[0], "n_cells"] > 0
    assert images.loc[os.path.splitext(empty)[0], ["n_cells", "too_few_cells"]].tolist() == [0, 1]


def test_channels_as_samples_of_each_pixel_are_imported_as_channels(plate):
    """A TIFF written (y, x, channels), as RGB-style files are: the same container as from (channels, y, x)."""
    folder, raw = plate
    data = stack(seed=11)
    last, first = raw_file_name("C03", 0, 100), raw_file_name("C03", 1, 101)
    tifffile.imwrite(os.path.join(raw, last), np.moveaxis(data, 0, -1))  # tifffile: photometric RGB, axes YXS
    write_tiff(os.path.join(raw, first), data)
    with tifffile.TiffFile(os.path.join(raw, last)) as tif:
        assert tif.series[0].axes == "YXS"  # what the test is about
    assert run(folder, raw) == 0
    for name in (last, first):
        with open_file(os.path.join(folder, name.replace(".tiff", ".h5")), "r") as f:
            imported = [read_image(f, key) for key in ("nuclei", "cells", "marker")]
        np.testing.assert_array_equal(np.stack(imported), data)


@pytest.mark.parametrize("compression", ["lzw", "zstd", "deflate"])
def test_compressed_raw_tiffs_are_imported(plate, compression):
    """Microscopes often write LZW; tifffile decodes it with imagecodecs (a dependency)."""
    folder, raw = plate
    data, name = stack(seed=12), raw_file_name("C03", 0, 100)
    tifffile.imwrite(os.path.join(raw, name), data, compression=compression, photometric="minisblack")
    assert run(folder, raw) == 0
    with open_file(os.path.join(folder, name.replace(".tiff", ".h5")), "r") as f:
        np.testing.assert_array_equal(read_image(f, "nuclei"), data[0])


MISSING_CODEC = """
import sys
sys.modules["imagecodecs"] = None  # as on an installation without it: tifffile cannot decode LZW
from batchlib import run_workflow
from batchlib.jobs.importer import ImportImages
run_workflow("W", sys.argv[1], [ImportImages({"DAPI": "nuclei"}, input_folder=sys.argv[2])],
             progress=False, ignore_invalid_inputs=True)
"""


def test_a_codec_that_is_not_installed_is_named_with_the_fix(tmp_path):
    raw, folder = tmp_path / "raw", tmp_path / "P"
    raw.mkdir()
    name = raw_file_name("C01", 0, 0)
    tifffile.imwrite(raw / name, stack(), compression="lzw", photometric="minisblack")
    subprocess.run([sys.executable, "-c", MISSING_CODEC, str(folder), str(raw)], check=True, timeout=300)
    message = job_status(str(folder), "ImportImages")["invalid"][name]
    assert "codec that is not installed" in message and "pip install -U imagecodecs" in message, message


def test_a_file_with_hundreds_of_planes_is_named_in_a_short_message(plate):
    folder, raw = plate
    name = raw_file_name("C03", 0, 100)
    write_tiff(os.path.join(raw, name), np.zeros((300, 8, 8), np.uint16))
    assert run(folder, raw) == 1
    message = job_status(folder, "ImportImages")["invalid"][name]
    assert "channel0,channel1,channel2,channel3,channel4,...,channel299 (300 in all)" in message, message
    assert len(message) < 400, message


def test_status_counts_a_file_refused_by_the_plate_as_invalid_not_pending(plate):
    """Refused because of the rest of the plate (checked again on every run): invalid in `batchlib status`."""
    folder, raw = plate
    name = raw_file_name("C03", 0, 100)
    write_tiff(os.path.join(raw, name), stack()[:2])  # two channels where the plate has three
    assert run(folder, raw, "--ignore-invalid-inputs") == 0
    jobs = folder_status(folder)["jobs"]
    assert {k: jobs["ImportImages"][k] for k in ("done", "invalid", "pending")} == {
        "done": 4,
        "invalid": 1,
        "pending": 0,
    }
    assert all(jobs[j]["pending"] == 0 for j in PER_IMAGE_JOBS[1:] + PLATE_JOBS)  # nothing waits for its output
    assert "checking again" in explain(folder, "ImportImages", None)  # what a run would do with it
    os.remove(os.path.join(raw, name))
    assert folder_status(folder)["jobs"]["ImportImages"]["invalid"] == 0


def test_unreadable_file_is_invalid_until_its_permissions_are_fixed(plate):
    """chmod 000 -> invalid (checked again every run) -> chmod 644 -> imported, without --force-recompute."""
    folder, raw = plate
    path = os.path.join(raw, NEW)
    write_tiff(path, stack())
    os.chmod(path, 0)
    # root reads any file: run the workflow without the capabilities that let it.
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []
    if prefix and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a file cannot be made unreadable")
    script = "import sys; from batchlib.cell_analysis import cell_analysis_main as m; sys.exit(m(sys.argv[1:]))"
    command = [*prefix, sys.executable, "-c", script, *options(folder, raw), "--min-cells", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert f"{NEW} cannot be read: permission denied (fix its permissions" in done.stderr
    os.chmod(path, 0o644)  # changes neither size nor mtime
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert workflow_status(folder)["ImportImages"]["processed_now"] == 1
    assert len(image_names(folder)) == 5


@pytest.mark.parametrize(
    "option, message",
    [
        (["--channels", "DAPI:nuclei,WF_GFP:cells,CY5:marker"], "channels (--channels) maps CY5, but no raw file in"),
        (["--n-jobs", "0"], "argument --n-jobs: expected an integer >= 1, got '0'"),
        (["--prob-thresh", "1.5"], "argument --prob-thresh: expected a number from 0 to 1, got '1.5'"),
        (["--image-shape", "3,96"], "argument --image-shape: expected channels,y,x as three positive integers"),
        (["--image-dtype", "uint17"], "dtype (--image-dtype): 'uint17' is not a numpy dtype name"),
    ],
)
def test_config_mistakes_stop_before_the_plate_is_touched(tmp_path, capsys, option, message):
    raw, folder = str(tmp_path / "raw"), str(tmp_path / "P")
    write_demo_plate(raw, wells={"C01": 1.0}, sites=1, shape=SHAPE, n_nuclei=8)
    try:
        code = run(folder, raw, *option)
    except SystemExit as stop:  # argparse refuses the value while parsing
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and message in err
    if option[0] == "--channels":
        assert "the files have channels DAPI, TRITC, WF_GFP" in err
    assert not os.path.exists(folder)  # no folder, no lock, no summary
    assert "workflow CellAnalysisWorkflow" not in err


def test_a_declared_image_shape_is_the_reference(plate):
    folder, raw = plate
    write_tiff(os.path.join(raw, NEW), stack(shape=(64, 64)))
    # Declared: the new 64 x 64 file is right, unlike most of the plate (whose imported images stay).
    assert run(folder, raw, "--image-shape", "3,64,64") == 0
    assert workflow_status(folder)["ImportImages"]["processed_now"] == 1
    other = raw_file_name("C03", 1, 101)
    write_tiff(os.path.join(raw, other), stack(shape=(64, 64)))
    assert run(folder, raw, "--image-shape", "3,32,32") == 1
    message = job_status(folder, "ImportImages")["invalid"][other]
    assert message == f"{other} has shape (3, 64, 64), but the plate's images are declared to have shape (3, 32, 32)"


def test_files_refused_against_an_old_reference_are_checked_again(tmp_path):
    """3 files of 64 x 64 and 1 of 96 x 96: the odd one is refused; 3 more of 96 x 96 arrive: it is imported."""
    raw, folder = tmp_path / "raw", str(tmp_path / "P")
    raw.mkdir()
    for site in range(3):
        write_tiff(str(raw / raw_file_name("C01", site, site)), stack(seed=site, shape=(64, 64)))
    first = raw_file_name("C02", 0, 10)
    write_tiff(str(raw / first), stack(seed=10))
    assert run(folder, str(raw), "--ignore-invalid-inputs") == 0
    assert list(job_status(folder, "ImportImages")["invalid"]) == [first]
    for site in range(1, 4):
        write_tiff(str(raw / raw_file_name("C02", site, 10 + site)), stack(seed=10 + site))
    # Now most files are 96 x 96: the first one is imported with them, though it did not change.
    assert run(folder, str(raw), "--ignore-invalid-inputs") == 0
    assert workflow_status(folder)["ImportImages"]["processed_now"] == 4
    assert job_status(folder, "ImportImages")["invalid"] == {}  # the 64 x 64 ones, imported before, stay
    assert len(image_names(folder)) == 7
