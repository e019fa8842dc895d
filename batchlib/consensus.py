"""Consensus profiles: one row per treatment, the median (or mean) of its replicate wells across plates.

The same as pycytominer's ``consensus`` with ``operation="median"`` or
``"mean"`` (its ``aggregate`` over the replicate columns): groups sorted by
the replicate columns, missing values left out, a group whose key has a
missing value kept. Medians come from :func:`batchlib.profiles.well_median_table`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .errors import ConfigError
from .normalize import FEATURE_PREFIXES
from .profiles import well_median_table

OPERATIONS = ("median", "mean")


def consensus_profiles(
    profiles: pd.DataFrame,
    replicate_columns: Sequence[str] = ("Metadata_Plate", "Metadata_Well"),
    operation: str = "median",
    features: list[str] | None = None,
) -> pd.DataFrame:
    """The replicate columns and the ``operation`` of every feature, one row per group.

    Examples
    --------
    >>> wells = pd.DataFrame({"Metadata_broad_sample": ["x", "x", "y"], "Cells_Area": [1.0, 3.0, 5.0]})
    >>> consensus_profiles(wells, ["Metadata_broad_sample"]).values.tolist()
    [['x', 2.0], ['y', 5.0]]
    """
    if operation not in OPERATIONS:
        raise ConfigError(f"consensus operation must be one of {', '.join(OPERATIONS)}; got {operation!r}")
    missing = [c for c in replicate_columns if c not in profiles.columns]
    if missing:
        raise ConfigError(f"consensus: the profiles have no column {', '.join(missing)} (replicate columns)")
    features = features if features is not None else [c for c in profiles.columns if c.startswith(FEATURE_PREFIXES)]
    table = profiles[[*replicate_columns, *features]]
    if operation == "mean" or table[list(replicate_columns)].isna().any().any():
        grouped = table.astype({f: float for f in features}).groupby(list(replicate_columns), dropna=False)
        result = grouped.median() if operation == "median" else grouped.mean()
        return result.reset_index()
    import pyarrow as pa

    arrow = pa.Table.from_pandas(table.astype({f: np.float64 for f in features}), preserve_index=False)
    return well_median_table(arrow, list(replicate_columns), features).to_pandas()
