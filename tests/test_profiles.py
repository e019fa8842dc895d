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


def test_well_median_table_nulls_integer_keys_and_no_pandas(tmp_path):
    import json
    import subprocess
    import sys

    import pyarrow as pa
    import pyarrow.parquet as pq

    site = pa.array([3, 1, 3, 1, 2, 3, 1], type=pa.int32())
    feature = pa.array([1.0, None, 5.0, None, 2.0, 4.0, None])  # site 1: all missing
    counts = pa.array([4, 1, 2, 8, 7, 6, 3], type=pa.int16())
    path = str(tmp_path / "cells.parquet")
    pq.write_table(pa.table({"Metadata_Site": site, "Cells_F": feature, "Cells_N": counts}), path)
    script = (
        "import sys; from batchlib.profiles import well_median_table; "
        f"t = well_median_table({path!r}, strata=('Metadata_Site',)); "
        "assert 'pandas' not in sys.modules; import json; print(json.dumps(t.to_pydict()))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    table = json.loads(out)
    assert table["Metadata_Site"] == [1, 2, 3]
    assert np.isnan(table["Cells_F"][0]) and table["Cells_F"][1:] == [2.0, 4.0]
    assert table["Cells_N"] == [3.0, 7.0, 4.0]
