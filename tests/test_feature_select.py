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
