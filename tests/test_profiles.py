"""Per-well medians from a single-cell Parquet file equal pandas' groupby median."""

import numpy as np
import pandas as pd

from batchlib.profiles import well_medians


def test_well_medians_equal_pandas(tmp_path):
    rng = np.random.default_rng(0)
    n = 5000
    cells = pd.DataFrame(
        {
            "Metadata_Plate": rng.choice(["P1", "P2"], n),
            "Metadata_Well": rng.choice(["A01", "B02", "C03"], n),
            "Metadata_Site": rng.integers(0, 4, n),
        }
    )
    for i in range(20):
        cells[f"Cells_F{i}"] = rng.normal(size=n)
    cells.loc[::7, "Cells_F3"] = np.nan
    cells["Nuclei_Int"] = rng.integers(0, 100, n)
    path = str(tmp_path / "cells.parquet")
    cells.to_parquet(path, index=False)
    ours = well_medians(path, columns_per_pass=6)
    features = [c for c in cells.columns if c.startswith(("Cells_", "Nuclei_"))]
    expected = cells.groupby(["Metadata_Plate", "Metadata_Well"])[features].median().reset_index()
    assert (
        ours[["Metadata_Plate", "Metadata_Well"]].values.tolist()
        == expected[["Metadata_Plate", "Metadata_Well"]].values.tolist()
    )
    np.testing.assert_allclose(ours[features].to_numpy(), expected[features].to_numpy(), rtol=1e-12)
