"""Feature selection against pycytominer's feature_select: the same features dropped."""

import warnings

import numpy as np
import pandas as pd
import pytest

from batchlib.errors import ConfigError
from batchlib.feature_select import read_blocklist, select_features


def profiles(n: int = 300, seed: int = 1) -> pd.DataFrame:
    """Wells with constant, nearly constant, correlated (both signs), mostly-missing and plain features."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, n)
    return pd.DataFrame(
        {
            "Metadata_Well": [f"A{i % 24 + 1:02d}" for i in range(n)],
            "Metadata_control_type": rng.choice(["negcon", "trt"], n),
            "Cells_AreaShape_Area": base,
            "Cells_AreaShape_Perimeter": 2 * base + rng.normal(0, 0.05, n),  # correlated with Area
            "Cells_AreaShape_Negative": -base + rng.normal(0, 0.05, n),  # anti-correlated: pycytominer keeps it
            "Nuclei_Intensity_Constant": np.full(n, 7.0),
            "Nuclei_Intensity_Tiny": 1 + rng.normal(0, 1e-4, n),  # variance 1e-8
            "Nuclei_Texture_Sparse": np.where(rng.random(n) < 0.3, np.nan, rng.normal(0, 1, n)),
            "Cytoplasm_Intensity_Mean": rng.normal(5, 2, n),
            "Cytoplasm_Intensity_Copy": rng.normal(5, 2, n),
        }
    )


CASES = [
    (["variance_threshold"], "all", {}),
    (["drop_na_columns"], "all", {}),
    (["drop_na_columns"], "all", {"na_cutoff": 0.2}),
    (["correlation_threshold"], "all", {}),
    (["correlation_threshold"], "all", {"corr_method": "spearman", "corr_threshold": 0.8}),
    (["variance_threshold", "drop_na_columns", "correlation_threshold"], "all", {}),
    (["variance_threshold", "correlation_threshold"], "Metadata_control_type == 'negcon'", {}),
]


@pytest.mark.parametrize("operations, samples, options", CASES)
def test_the_same_features_as_pycytominer_drops(operations, samples, options):
    from pycytominer import feature_select

    table = profiles()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = feature_select(table, operation=operations, samples=samples, **options)
    dropped = select_features(table, operations, samples, **options)
    assert dropped, "the case drops something"
    assert [c for c in table.columns if c not in dropped] == list(theirs.columns)


def test_blocklist_drops_the_listed_features_like_pycytominer(tmp_path):
    from pycytominer import feature_select

    path = tmp_path / "blocklist.txt"
    path.write_text("blocklist\nCells_AreaShape_Perimeter\nNuclei_Not_Here\n")
    table = profiles()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = feature_select(table, operation="blocklist", blocklist_file=str(path))
    dropped = select_features(table, ["blocklist"], blocklist=read_blocklist(str(path)))
    assert dropped == ["Cells_AreaShape_Perimeter"]
    assert [c for c in table.columns if c not in dropped] == list(theirs.columns)


def test_bad_settings_are_clear_errors():
    with pytest.raises(ConfigError, match="operations must be among"):
        select_features(profiles(), ["variance"])
    with pytest.raises(ConfigError, match="corr_threshold"):
        select_features(profiles(), ["correlation_threshold"], corr_threshold=2)
    with pytest.raises(ConfigError, match="selects no row"):
        select_features(profiles(), samples="Metadata_control_type == 'poscon'")


@pytest.mark.parametrize("operation", ["median", "mean"])
def test_consensus_equals_pycytominer(operation):
    from pycytominer import consensus

    from batchlib.consensus import consensus_profiles

    table = profiles().assign(Metadata_broad_sample=lambda t: [f"BRD-{i % 7}" for i in range(len(t))])
    replicates = ["Metadata_broad_sample", "Metadata_control_type"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = consensus(table, replicate_columns=replicates, operation=operation, features="infer")
    ours = consensus_profiles(table, replicates, operation)
    pd.testing.assert_frame_equal(ours, theirs, check_dtype=False, rtol=1e-12)


@pytest.mark.parametrize("operations, samples, options", [c for c in CASES if "corr_method" not in c[2]])
def test_select_features_parquet_drops_the_same_features(tmp_path, operations, samples, options):
    from batchlib.feature_select import select_features_parquet

    table = profiles()
    path = tmp_path / "cells.parquet"
    table.to_parquet(path, index=False)
    streamed = select_features_parquet(str(path), operations, samples, rows_per_batch=70, columns_per_pass=3, **options)
    assert streamed == select_features(table, operations, samples, **options)


def test_streamed_correlations_equal_pandas_pairwise_complete_ones(tmp_path):
    import pyarrow.parquet as pq

    from batchlib.feature_select import _streamed_correlation

    table = profiles()
    table["Nuclei_Texture_Other"] = np.where(
        np.arange(len(table)) % 3 == 0, np.nan, table["Cells_AreaShape_Area"] + 1e6
    )
    path = tmp_path / "cells.parquet"
    table.to_parquet(path, index=False)
    columns = [c for c in table.columns if not c.startswith("Metadata_")]
    ours = _streamed_correlation(pq.ParquetFile(path), columns, np.ones(len(table), bool), rows_per_batch=64)
    theirs = table[columns].astype(float).corr().to_numpy()
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))  # the constant feature: NaN
    # A feature 1e6 from zero with a spread of 1 loses digits to the subtraction, in pandas too.
    offset = columns.index("Nuclei_Texture_Other")
    plain = [k for k in range(len(columns)) if k != offset]
    np.testing.assert_allclose(ours[np.ix_(plain, plain)], theirs[np.ix_(plain, plain)], atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9, equal_nan=True)
