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


def well_medians(
    path: str,
    strata: tuple[str, ...] = ("Metadata_Plate", "Metadata_Well"),
    features: list[str] | None = None,
    columns_per_pass: int = 16,
) -> pd.DataFrame:
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
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    names = pq.ParquetFile(path).schema_arrow.names
    features = features if features is not None else [c for c in names if c.startswith(FEATURE_PREFIXES)]
    # One integer code per row for its group, from Arrow's dictionary encoding of each key column.
    keys = pq.read_table(path, columns=list(strata))
    codes = np.zeros(keys.num_rows, dtype=np.int64)
    levels = []
    for name in strata:
        encoded = pc.dictionary_encode(keys.column(name)).combine_chunks()
        dictionary = encoded.dictionary.to_pylist()
        rank = np.argsort(np.argsort(np.array(dictionary, dtype=object), kind="stable"))  # codes in sorted order
        codes = codes * len(dictionary) + rank[encoded.indices.to_numpy()]
        levels.append(sorted(dictionary))
    groups, codes = np.unique(codes, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(groups) + 1))
    result = {}
    for i, name in enumerate(strata):  # decode the group codes back into their key values
        inner = int(np.prod([len(level) for level in levels[i + 1 :]], dtype=np.int64))
        result[name] = [levels[i][int(g) // inner % len(levels[i])] for g in groups]
    for start in range(0, len(features), columns_per_pass):
        chunk = features[start : start + columns_per_pass]
        table = pq.read_table(path, columns=chunk)
        # Features x rows, rows in group order: each group is a contiguous slice of every row.
        block = np.empty((len(chunk), len(order)), dtype=np.float64)
        for j, name in enumerate(chunk):
            block[j] = table.column(name).to_numpy()[order]
        del table
        median = np.nanmedian if np.isnan(block).any() else np.median  # nanmedian is several times slower
        medians = np.column_stack([median(block[:, bounds[g] : bounds[g + 1]], axis=1) for g in range(len(groups))])
        for j, name in enumerate(chunk):
            result[name] = medians[j]
    return pd.DataFrame(result)
