"""A batch of plates: per-plate normalize only where profiles changed, feature selection and consensus across plates."""

import os
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

from batchlib import run_job
from batchlib.batch import BatchOptions, batch_status, run_profiling_batch
from batchlib.io import open_file, write_table
from batchlib.jobs.export import ExportProfiles

WELLS = ["A01", "A02", "B01", "B02"]
PLATEMAP = "well_position\tbroad_sample\tcontrol_type\n" + "".join(
    f"{w}\t{s}\t{c}\n" for w, s, c in zip(WELLS, ["DMSO", "BRD-1", "DMSO", "BRD-2"], ["negcon", "trt", "negcon", "trt"])
)


def make_plate(batch, plate: str, seed: int, platemap) -> None:
    """A plate with an export: 2 sites per well, a constant and a correlated feature among random ones."""
    folder = batch / plate
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for well in WELLS:
        for site in range(2):
            n = 6
            area = rng.uniform(100, 400, n)
            cells = pd.DataFrame(
                {
                    "label_id": np.arange(1, n + 1),
                    "Cells_AreaShape_Area": area,
                    "Cells_AreaShape_Perimeter": 2 * area + rng.normal(0, 1, n),
                    "Cells_Intensity_Constant": np.full(n, 5.0),
                }
            )
            nuclei = pd.DataFrame({"label_id": cells["label_id"], "Nuclei_Intensity_Mean": rng.uniform(0, 1, n)})
            # A feature constant on one plate only (a stain that failed there): 0 after that plate's normalize.
            nuclei["Nuclei_Intensity_Stain"] = 7.0 if plate == "P2" else rng.uniform(0, 1, n)
            cytoplasm = pd.DataFrame({"label_id": cells["label_id"], "Cytoplasm_Intensity_Mean": rng.uniform(0, 1, n)})
            name = f"Well{well}_Point{well}_{site:04d}_ChannelDAPI_Seq0000.h5"
            with open_file(folder / name, "a") as f:
                write_table(f, "cell_segmentation/default", cells)
                write_table(f, "nucleus_segmentation/default", nuclei)
                write_table(f, "cell_segmentation/cytoplasm", cytoplasm)
    assert run_job(ExportProfiles(platemap=str(platemap)), folder, progress=False).processed == 1


@pytest.fixture
def batch(tmp_path):
    platemap = tmp_path / "platemap.txt"
    platemap.write_text(PLATEMAP)
    batch = tmp_path / "B1"
    for i, plate in enumerate(["P1", "P2", "P3"]):
        make_plate(batch, plate, i, platemap)
    return batch, platemap


OPTIONS = BatchOptions(consensus_by=("Metadata_broad_sample",))


def test_a_batch_equals_pycytominer_and_reruns_only_what_changed(batch):
    from pycytominer import consensus, feature_select

    batch, platemap = batch
    status = run_profiling_batch(batch, OPTIONS)
    assert {p: s["processed"] for p, s in status["plates"].items()} == {"P1": 1, "P2": 1, "P3": 1}
    assert status["batch_steps"]["action"] == "run"
    wells = pd.concat(
        [pd.read_parquet(batch / p / f"{p}_normalized" / f"{p}_normalized.parquet") for p in ("P1", "P2", "P3")],
        ignore_index=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        selected = feature_select(wells, operation=list(OPTIONS.operations))
        theirs = consensus(selected, replicate_columns=["Metadata_broad_sample"], operation="median")
    assert (wells.loc[wells["Metadata_Plate"] == "P2", "Nuclei_Intensity_Stain"] == 0).all()
    ours = pd.read_parquet(batch / "B1_feature_selected.parquet")
    assert list(ours.columns) == list(selected.columns) and "Nuclei_Intensity_Stain" in ours.columns
    dropped = (batch / "B1_dropped_features.txt").read_text().split()
    assert "Cells_Intensity_Constant" in dropped and len(dropped) == 2  # the constant and one of the pair
    pd.testing.assert_frame_equal(pd.read_parquet(batch / "B1_consensus.parquet"), theirs, check_dtype=False)
    scores = pd.read_csv(batch / "B1_map.csv")
    assert sorted(scores["Metadata_broad_sample"]) == ["BRD-1", "BRD-2", "DMSO"]
    assert scores["mean_average_precision"].between(0, 1).all() and (batch / "B1_map.png").stat().st_size > 0
    # Nothing changed: no plate normalized again, the batch steps skipped.
    again = run_profiling_batch(batch, OPTIONS)
    assert all(s["processed"] == 0 for s in again["plates"].values())
    assert again["batch_steps"]["action"] == "skip"
    # A plate added: only it is normalized; the batch steps run again with it.
    make_plate(batch, "P4", 9, platemap)
    added = run_profiling_batch(batch, OPTIONS)
    assert {p: s["processed"] for p, s in added["plates"].items()} == {"P1": 0, "P2": 0, "P3": 0, "P4": 1}
    assert added["batch_steps"]["why"] == "plates added: P4"
    assert set(pd.read_parquet(batch / "B1_feature_selected.parquet")["Metadata_Plate"]) == {"P1", "P2", "P3", "P4"}
    # A plate removed: the batch steps run again without it.
    shutil.rmtree(batch / "P2")
    removed = run_profiling_batch(batch, OPTIONS)
    assert removed["batch_steps"]["why"] == "plates removed: P2"
    assert set(pd.read_parquet(batch / "B1_feature_selected.parquet")["Metadata_Plate"]) == {"P1", "P3", "P4"}
    assert batch_status(batch)["batch_steps"]["plates"] == ["P1", "P3", "P4"]


def test_a_batch_run_that_dies_midway_is_redone_with_the_same_outputs(batch, monkeypatch):
    import batchlib.batch as batch_module

    batch, _ = batch
    clean = batch.parent / "clean"
    shutil.copytree(batch, clean)
    run_profiling_batch(clean, OPTIONS)

    def dies(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill between the two outputs

    monkeypatch.setattr(batch_module, "consensus_profiles", dies)
    with pytest.raises(KeyboardInterrupt):
        run_profiling_batch(batch, OPTIONS)
    assert not (batch / "B1_consensus.parquet").exists()
    monkeypatch.undo()
    status = run_profiling_batch(batch, OPTIONS)
    assert status["batch_steps"]["action"] == "run"  # nothing was recorded as done
    for name in ("B1_feature_selected.parquet", "B1_consensus.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(batch / name), pd.read_parquet(clean / name.replace("B1", "clean"))
        )


def test_consensus_by_a_column_the_profiles_lack_names_it(batch):
    from batchlib.errors import ConfigError

    batch, _ = batch
    with pytest.raises(ConfigError, match="Metadata_dose"):
        run_profiling_batch(batch, BatchOptions(consensus_by=("Metadata_dose",)))
    assert not os.path.exists(batch / "batchlib" / "profiling_batch.json")


def test_the_batch_script_and_batchlib_status(batch, tmp_path):
    import subprocess
    import sys

    from batchlib.report import folder_status, format_status

    batch, _ = batch
    config = tmp_path / "batch.conf"
    config.write_text(f"batch-folder = {batch}\nconsensus-by = Metadata_broad_sample\n")
    script = os.path.join(os.path.dirname(__file__), "..", "workflows", "profiling_batch_workflow.py")
    done = subprocess.run([sys.executable, script, "-c", str(config)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (batch / "B1_consensus.parquet").exists()
    shown = format_status(folder_status(batch))
    assert "batch:  3 plate(s) with profiles" in shown and "feature selection and consensus: run" in shown
    bad = subprocess.run(
        [sys.executable, script, "-c", str(config), "--consensus-by", "Metadata_dose"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "Metadata_dose" in bad.stderr


def test_replicate_map_finds_treatments_with_a_signal_and_not_those_without():
    from batchlib.batch import replicate_map

    rng = np.random.default_rng(3)
    rows, samples = [], []
    signatures = {"strong-1": rng.normal(0, 3, 12), "strong-2": rng.normal(0, 3, 12), "none": np.zeros(12)}
    for _plate in range(4):  # replicates on 4 plates
        for sample, signature in signatures.items():
            for _ in range(2):
                rows.append(signature + rng.normal(0, 1, 12))
                samples.append(sample)
    profiles = pd.DataFrame(np.array(rows), columns=[f"Cells_F{k}" for k in range(12)])
    profiles.insert(0, "Metadata_broad_sample", samples)
    scores = replicate_map(profiles, ["Metadata_broad_sample"], null_size=2000).set_index("Metadata_broad_sample")
    assert scores.loc[["strong-1", "strong-2"], "mean_average_precision"].min() > 0.9
    assert scores.loc[["strong-1", "strong-2"], "below_corrected_p"].all()
    assert scores.loc["none", "mean_average_precision"] < 0.6 and not scores.loc["none", "below_corrected_p"]


@pytest.mark.parametrize("after", [0.5, 1.5])
def test_kill_9_of_the_batch_workflow_then_rerun_gives_the_same_outputs(batch, after):
    import signal
    import subprocess
    import sys
    import time

    batch, _ = batch
    clean = batch.parent / "clean"
    shutil.copytree(batch, clean)
    run_profiling_batch(clean, OPTIONS)
    script = os.path.join(os.path.dirname(__file__), "..", "workflows", "profiling_batch_workflow.py")
    run = subprocess.Popen(
        [sys.executable, script, "--batch-folder", str(batch), "--consensus-by", "Metadata_broad_sample"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(after)
    run.send_signal(signal.SIGKILL)
    run.wait()
    run_profiling_batch(batch, OPTIONS)  # breaks the stale locks, redoes what was not recorded
    for name in ("feature_selected.parquet", "consensus.parquet", "map.csv", "dropped_features.txt"):
        if name.endswith(".parquet"):
            pd.testing.assert_frame_equal(
                pd.read_parquet(batch / f"B1_{name}"), pd.read_parquet(clean / f"clean_{name}")
            )
        else:
            assert (batch / f"B1_{name}").read_text() == (clean / f"clean_{name}").read_text()
