"""Per-well profiles from single-cell tables, fast and in little memory.

``pycytominer.aggregate`` loads the whole single-cell table into pandas and
groups it. Here the Parquet file is read a few columns at a time, rows are
ordered by well once, and the median of every column is taken per well on
contiguous blocks: the same numbers, several times faster, in a fraction of
the memory.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURE_PREFIXES = ("Nuclei_", "Cells_", "Cytoplasm_")


def well_medians(path: str, strata: tuple[str, ...] = ("Metadata_Plate", "Metadata_Well"),
                 features: list[str] | None = None, columns_per_pass: int = 16) -> pd.DataFrame:
    """Median of every feature per group of ``strata`` from a single-cell Parquet file.

    Parameters
    ----------
    path : str
        Parquet file with one row per cell.
    strata : tuple of str
        Columns that define a group (a well).
    features : list of str, optional
        Columns to aggregate; default those starting with Nuclei_, Cells_ or Cytoplasm_.
    columns_per_pass : int
        Feature columns read and aggregated together (bounds the memory).

    Returns
    -------
    DataFrame: the strata columns, then the medians, groups sorted.
    """
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    features = features if features is not None else [c for c in names if c.startswith(FEATURE_PREFIXES)]
    keys = pq.read_table(path, columns=list(strata)).to_pandas()
    codes, groups = pd.MultiIndex.from_frame(keys).factorize(sort=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(groups) + 1))
    result = {name: groups.get_level_values(i) for i, name in enumerate(strata)}
    for start in range(0, len(features), columns_per_pass):
        chunk = features[start : start + columns_per_pass]
        table = pq.read_table(path, columns=chunk)
        block = np.column_stack([table.column(c).to_numpy().astype(np.float64, copy=False) for c in chunk])[order]
        del table
        medians = np.vstack([np.nanmedian(block[bounds[g] : bounds[g + 1]], axis=0) for g in range(len(groups))])
        for j, name in enumerate(chunk):
            result[name] = medians[:, j]
    return pd.DataFrame(result)
