"""The StarDist job and the model batchlib ships (real TensorFlow, no mocks)."""

import os
import re
import subprocess
import sys
import threading

import numpy as np
import pytest

from batchlib import run_workflow
from batchlib.io import open_file, read_image, write_image
from batchlib.jobs.segmentation import SegmentNucleiStarDist
from batchlib.jobs.stardist_model import SHIPPED_MODEL, auto_tiles, load_stardist, normalize, recorded_diameter

pytest.importorskip("stardist")


@pytest.fixture(scope="module")
def real_frames():
    import ndev_sampledata
    import tifffile

    path = os.path.join(os.path.dirname(ndev_sampledata.__file__), "samples", "scratch-assay-labeled-10T-2Ch.tiff")
    data = tifffile.imread(path)
    return data[0], data[2]


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_shipped_model_f1_on_held_out_real_frames_at_any_scale(real_frames, scale):
    """Frames 7-9 of the ndev-sampledata series (never trained on), as if imaged at another magnification.

    Through the job's path: the nucleus diameter estimated, the image rescaled to the model's, labels back.
    """
    from skimage.transform import rescale
    from stardist.matching import matching_dataset

    from batchlib.nucleus_size import estimate_diameter

    images, labels = real_frames
    job = SegmentNucleiStarDist()
    truth, predictions = [], []
    for t in (7, 8, 9):
        image = rescale(images[t].astype(np.float32), scale, order=1, anti_aliasing=scale < 1, preserve_range=True)
        truth.append(rescale(labels[t], scale, order=0, anti_aliasing=False, preserve_range=True).astype(np.int32))
        predictions.append(job.predict(image, estimate_diameter(image))[0])
    stats = matching_dataset(truth, predictions, thresh=0.5, show_progress=False)
    assert stats.f1 >= 0.85, stats


def test_job_labels_equal_direct_prediction(tmp_path, real_frames):
    images, _ = real_frames
    folder = tmp_path / "plate"
    folder.mkdir()
    for t in (7, 8):
        with open_file(str(folder / f"WellC01_PointC01_{t:04d}_ChannelDAPI_Seq{t:04d}.h5"), "w") as f:
            write_image(f, "nuclei", images[t])
    # The model's own nucleus diameter: no rescaling, so StarDist's plain prediction is the reference.
    diameter = recorded_diameter(None)
    job = SegmentNucleiStarDist(tile_size=256, nucleus_diameter=diameter)  # tiles: 210 x 576 -> 1 x 3
    result = run_workflow("wf", str(folder), [job], progress=False)["SegmentNucleiStarDist"]
    assert result.processed == 2
    # StarDist's own prediction path (Keras' Model.predict), not batchlib's faster one.
    from stardist.models import StarDist2D

    model = StarDist2D(None, name=os.path.basename(SHIPPED_MODEL), basedir=os.path.dirname(SHIPPED_MODEL))
    assert type(model.keras_model).__name__ != "OneCallPredict"
    for t in (7, 8):
        direct, _ = model.predict_instances(
            normalize(images[t]), n_tiles=auto_tiles(images[t].shape, 256), show_tile_progress=False
        )
        with open_file(str(folder / f"WellC01_PointC01_{t:04d}_ChannelDAPI_Seq{t:04d}.h5"), "r") as f:
            ours = read_image(f, "nucleus_segmentation")
        assert ours.dtype == np.uint32 and ours.max() > 20
        np.testing.assert_array_equal(ours, direct)
    # The model's files are parameters: the same model reruns nothing.
    again = SegmentNucleiStarDist(tile_size=256, nucleus_diameter=diameter)
    assert run_workflow("wf", str(folder), [again], progress=False)["SegmentNucleiStarDist"].processed == 0


def test_job_labels_equal_predict_when_rescaled(tmp_path, real_frames):
    """The job prepares images in its I/O thread: the labels equal ``predict`` on the same image, rescaled."""
    from skimage.transform import rescale

    from batchlib.nucleus_size import SCALE_ATTR, estimate_diameter

    images, _ = real_frames
    image = rescale(images[7].astype(np.float32), 3.0, order=1, preserve_range=True).astype(np.uint16)
    path = str(tmp_path / "WellC01_PointC01_0007_ChannelDAPI_Seq0007.h5")
    with open_file(path, "w") as f:
        write_image(f, "nuclei", image)
    job = SegmentNucleiStarDist()
    assert run_workflow("wf", str(tmp_path), [job], progress=False)["SegmentNucleiStarDist"].processed == 1
    expected, scale = job.predict(image, estimate_diameter(image))
    assert scale < 0.5  # shrunk: normalized and smoothed before StarDist zooms
    with open_file(path, "r") as f:
        np.testing.assert_array_equal(read_image(f, "nucleus_segmentation"), expected)
        assert f.attrs[SCALE_ATTR] == scale


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own niceness is Linux's")
def test_the_io_thread_runs_behind_the_model(tmp_path, real_frames):
    """Reading and sizing the next image happens at a lower priority than the prediction."""
    images, _ = real_frames
    for t in (7, 8):
        with open_file(str(tmp_path / f"WellC01_PointC01_{t:04d}_ChannelDAPI_Seq{t:04d}.h5"), "w") as f:
            write_image(f, "nuclei", images[t][:128, :128])
    seen = []

    class Recording(SegmentNucleiStarDist):
        def _read(self, path):
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return super()._read(path)

    main = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    if main >= 19:
        pytest.skip("the tests run at the lowest priority already")
    assert run_workflow("wf", str(tmp_path), [Recording()], progress=False)["Recording"].processed == 2
    assert len(seen) == 2 and all(niceness > main for niceness in seen), (main, seen)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main


def test_unknown_model_is_a_clear_error(tmp_path):
    from batchlib.errors import ConfigError

    empty = tmp_path / "not_a_model"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        load_stardist(str(empty))


# What TensorFlow's C++ start-up (absl) and StarDist's model loading print unless asked to.
_CHATTER = (
    "absl::InitializeLog",
    "oneDNN custom operations",
    "cpu_feature_guard",
    "Loading network weights",
    "Loading thresholds",
    "Using default values",
)
_ABSL_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\]", re.MULTILINE)


def test_a_run_is_quiet_unless_loglevel_is_debug(tmp_path):
    """The workflow script in a fresh process: by default no TensorFlow or StarDist chatter on stdout or stderr."""
    from batchlib.demo import write_demo_plate

    raw = tmp_path / "raw"
    write_demo_plate(raw, wells=["C01"], sites=1, shape=(64, 64), n_nuclei=5)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = os.path.join(root, "workflows", "cell_analysis_workflow.py")
    runs = {}
    for level in ("INFO", "DEBUG"):  # both at once: each spends most of its time importing TensorFlow
        env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP_")}
        # The batchlib of this tree, whichever one is installed.
        env.update(LOGLEVEL=level, PYTHONPATH=os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")])))
        command = [sys.executable, script, "--folder", str(tmp_path / level), "--input-folder", str(raw)]
        runs[level] = subprocess.Popen(
            [*command, "--steps", "import,segment_nuclei", "--no-progress"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    (out, err), (debug_out, debug_err) = (run.communicate(timeout=300) for run in runs.values())
    assert [run.returncode for run in runs.values()] == [0, 0], err + debug_err
    assert "SegmentNucleiStarDist        1" in err  # the summary
    for chatter in _CHATTER:
        assert chatter not in out and chatter not in err, chatter
    assert not _ABSL_LINE.search(out + err), err
    # With LOGLEVEL=DEBUG StarDist's prints are log records of Workflow.stardist, on stderr and in the log file.
    assert "Loading network weights" not in debug_out
    assert "DEBUG Workflow.stardist: Loading network weights from 'weights_best.h5'." in debug_err
    log = (tmp_path / "DEBUG" / "batchlib" / "CellAnalysisWorkflow.log").read_text()
    assert "Workflow.stardist: Loading network weights" in log
