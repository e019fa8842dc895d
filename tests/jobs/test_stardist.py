"""The StarDist job and the model batchlib ships (real TensorFlow, no mocks)."""

import os

import numpy as np
import pytest

from batchlib import run_workflow
from batchlib.io import open_file, read_image, write_image
from batchlib.jobs.segmentation import SHIPPED_MODEL, SegmentNucleiStarDist, auto_tiles, load_stardist, normalize

pytest.importorskip("stardist")


@pytest.fixture(scope="module")
def real_frames():
    import ndev_sampledata
    import tifffile

    path = os.path.join(os.path.dirname(ndev_sampledata.__file__), "samples", "scratch-assay-labeled-10T-2Ch.tiff")
    data = tifffile.imread(path)
    return data[0], data[2]


def test_shipped_model_f1_on_held_out_real_frames(real_frames):
    """Frames 7-9 of the ndev-sampledata series were not used in training (scripts/train_nuclei_model.py)."""
    from stardist.matching import matching_dataset

    images, labels = real_frames
    model = load_stardist()
    predictions = [model.predict_instances(normalize(images[t]))[0] for t in (7, 8, 9)]
    stats = matching_dataset([labels[t] for t in (7, 8, 9)], predictions, thresh=0.5, show_progress=False)
    assert stats.f1 >= 0.8, stats


def test_job_labels_equal_direct_prediction(tmp_path, real_frames):
    images, _ = real_frames
    folder = tmp_path / "plate"
    folder.mkdir()
    for t in (7, 8):
        with open_file(str(folder / f"WellC01_PointC01_{t:04d}_ChannelDAPI_Seq{t:04d}.h5"), "w") as f:
            write_image(f, "nuclei", images[t])
    job = SegmentNucleiStarDist(tile_size=256)  # forces tiled prediction (210 x 576 -> 1 x 3 tiles)
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
    assert (
        run_workflow("wf", str(folder), [SegmentNucleiStarDist(tile_size=256)], progress=False)[
            "SegmentNucleiStarDist"
        ].processed
        == 0
    )


def test_unknown_model_is_a_clear_error(tmp_path):
    from batchlib.errors import ConfigError

    empty = tmp_path / "not_a_model"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        load_stardist(str(empty))
