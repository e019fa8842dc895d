"""normalize_profiles against pycytominer's normalize, and the normalize step of a plate."""

import warnings

import numpy as np
import pandas as pd
import pytest

from batchlib import run_job
from batchlib.errors import ConfigError
from batchlib.jobs.export import ExportProfiles
from batchlib.jobs.normalize import NormalizeProfiles
from batchlib.normalize import METHODS, normalize_profiles


def profiles(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Cells of three wells with a normal, a constant, a NaN-heavy and an integer feature."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "Metadata_Well": rng.choice(["A01", "A02", "B01"], n),
            "Metadata_control_type": rng.choice(["negcon", "trt"], n),
            "Cells_AreaShape_Area": rng.normal(300, 40, n),
            "Cells_Intensity_Constant": np.full(n, 3.0),
            "Nuclei_Texture_Sparse": np.where(rng.random(n) < 0.8, np.nan, rng.random(n)),
            "Cytoplasm_Count": rng.integers(0, 100, n),
        }
    )


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("samples", ["all", "Metadata_control_type == 'negcon'"])
def test_normalize_equals_pycytominer(method, samples):
    from pycytominer import normalize

    table = profiles()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = normalize(table, features="infer", meta_features="infer", samples=samples, method=method)
    ours = normalize_profiles(table, method, samples)
    assert list(ours.columns) == list(theirs.columns)
    pd.testing.assert_frame_equal(ours, theirs, check_dtype=False, rtol=1e-9, atol=1e-12)


def test_a_query_that_selects_nothing_or_does_not_evaluate_names_the_option():
    with pytest.raises(ConfigError, match="--normalize-samples .* selects no row"):
        normalize_profiles(profiles(), samples="Metadata_control_type == 'poscon'", option="--normalize-samples")
    with pytest.raises(ConfigError, match="does not evaluate.*Metadata_control_type"):
        normalize_profiles(profiles(), samples="Metadata_dose > 1")


def test_the_normalize_step_writes_both_levels_from_the_export(tmp_path):
    from jobs.test_tables_and_crops import SITES, add_container

    folder = tmp_path / "P1"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for well, site, n in SITES:
        add_container(folder, well, site, n, rng)
    assert run_job(ExportProfiles(), folder).processed == 1
    assert run_job(NormalizeProfiles("mad_robustize", csv=True), folder).processed == 1
    out = folder / "P1_normalized"
    assert sorted(p.name for p in out.iterdir()) == [
        "P1_normalized.csv",
        "P1_normalized.parquet",
        "P1_single_cell_normalized.csv",
        "P1_single_cell_normalized.parquet",
    ]
    single = pd.read_parquet(folder / "P1_profiles" / "P1_single_cell.parquet")
    expected = normalize_profiles(single, "mad_robustize")
    pd.testing.assert_frame_equal(pd.read_parquet(out / "P1_single_cell_normalized.parquet"), expected)
    assert run_job(NormalizeProfiles("mad_robustize", csv=True), folder).processed == 0  # up to date
    failed = run_job(NormalizeProfiles(samples="Metadata_Well == 'Z99'"), folder, ignore_failed_outputs=True)
    assert failed.failed == 1 and "--normalize-samples" in " ".join(map(str, failed.failed_files.values()))


@pytest.mark.parametrize("method", METHODS)
def test_normalize_parquet_streams_to_the_same_values(tmp_path, method):
    from batchlib.normalize import normalize_parquet

    table = profiles(n=2000)
    source, target = tmp_path / "cells.parquet", tmp_path / "normalized.parquet"
    table.to_parquet(source, index=False)
    samples = "Metadata_control_type == 'negcon'"
    normalize_parquet(str(source), str(target), method, samples, columns_per_pass=2, rows_per_batch=300)
    expected = normalize_profiles(table, method, samples)
    pd.testing.assert_frame_equal(pd.read_parquet(target), expected, check_exact=True, check_dtype=False)
