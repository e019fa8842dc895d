"""Feature selection for profiles, as pycytominer's ``feature_select`` decides it.

Each operation lists features to exclude, computed on the reference rows
(all, or a query) and on the features left by the operations before it:

- ``variance_threshold``: variance (``ddof=0``, NaN left out) at most
  ``min_variance`` (scikit-learn's ``VarianceThreshold``, pycytominer's
  default 1e-6); an all-missing feature goes too;
- ``drop_na_columns``: more than ``na_cutoff`` (default 0.05) of the values missing;
- ``correlation_threshold``: of each pair correlated above
  ``corr_threshold`` (default 0.9; Pearson, or Spearman/Kendall), the one
  with the larger sum of absolute correlations to all features. As in
  pycytominer, only positive correlations count;
- ``blocklist``: the features named in a blocklist (one per line, the
  format of pycytominer's ``blocklist_features.txt``).

The selected lists are the ones pycytominer selects on the same input
(tests compare them).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .errors import ConfigError
from .normalize import FEATURE_PREFIXES, reference_rows

OPERATIONS = ("variance_threshold", "drop_na_columns", "correlation_threshold", "blocklist")
CORRELATION_METHODS = ("pearson", "spearman", "kendall")


def low_variance(values: pd.DataFrame, min_variance: float = 1e-6) -> list[str]:
    """Columns whose variance (NaN left out) is at most ``min_variance``, or undefined.

    Examples
    --------
    >>> low_variance(pd.DataFrame({"a": [1.0, 1.0, 1.0], "b": [1.0, 2.0, 3.0]}))
    ['a']
    """
    if min_variance < 0:
        raise ConfigError(f"min_variance must be at least 0; got {min_variance}")
    array = values.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column: NaN variance, excluded
        variances = np.nanvar(array, axis=0)
        if min_variance == 0:  # scikit-learn compares the peak-to-peak range too
            variances = np.nanmin(np.array([variances, np.ptp(array, axis=0)]), axis=0)
    keep = variances > min_variance
    if len(keep) and not keep.any():
        raise ConfigError(f"no feature has a variance above min_variance {min_variance:g}: every feature would go")
    return [c for c, kept in zip(values.columns, keep) if not kept]


def mostly_missing(values: pd.DataFrame, cutoff: float = 0.05) -> list[str]:
    """Columns with more than ``cutoff`` of their values missing.

    Examples
    --------
    >>> mostly_missing(pd.DataFrame({"a": [1.0, None, None], "b": [1.0, 2.0, None]}), cutoff=0.5)
    ['a']
    """
    if not 0 <= cutoff <= 1:
        raise ConfigError(f"na_cutoff must be between 0 and 1; got {cutoff}")
    share = values.isna().sum() / len(values) if len(values) else pd.Series(0.0, index=values.columns)
    return [c for c in values.columns if share[c] > cutoff]


def correlated(values: pd.DataFrame, threshold: float = 0.9, method: str = "pearson") -> list[str]:
    """Of each pair correlated above ``threshold``, the feature more correlated with all the others.

    Examples
    --------
    >>> x = np.arange(10.0)
    >>> correlated(pd.DataFrame({"a": x, "b": 2 * x + 1, "c": np.sin(x)}))
    ['b']
    """
    if not 0 <= threshold <= 1:
        raise ConfigError(f"corr_threshold must be between 0 and 1; got {threshold}")
    if method not in CORRELATION_METHODS:
        raise ConfigError(f"corr_method must be one of {', '.join(CORRELATION_METHODS)}; got {method!r}")
    array = values.to_numpy(dtype=np.float64, na_value=np.nan)
    if method == "pearson" and np.isfinite(array).all():
        matrix = np.corrcoef(array.T)  # what pycytominer computes when nothing is missing
    else:
        matrix = values.astype(np.float64).corr(method=method).to_numpy()
    columns = list(values.columns)
    # Rank of each feature by its summed absolute correlation, in the order pandas' sort_values gives.
    rank = pd.Series(np.abs(matrix).sum(axis=0), index=columns).sort_values().index.get_indexer(columns)
    rows, cols = np.nonzero(np.tril(matrix > threshold, k=-1))
    excluded = {columns[a] if rank[a] > rank[b] else columns[b] for a, b in zip(rows, cols)}
    return [c for c in columns if c in excluded]


def read_blocklist(path: str) -> list[str]:
    """Feature names of a blocklist file: one per line, a first line ``blocklist`` as header (optional)."""
    try:
        with open(path, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    except OSError as err:
        raise ConfigError(f"blocklist {path}: cannot read it ({err})") from err
    return names[1:] if names and names[0] == "blocklist" else names


def select_features(
    profiles: pd.DataFrame,
    operations: Sequence[str] = ("variance_threshold",),
    samples: str = "all",
    features: list[str] | None = None,
    min_variance: float = 1e-6,
    na_cutoff: float = 0.05,
    corr_threshold: float = 0.9,
    corr_method: str = "pearson",
    blocklist: Sequence[str] = (),
) -> list[str]:
    """The features to drop from ``profiles``, operation after operation (defaults as pycytominer's).

    Parameters
    ----------
    profiles : DataFrame
        One row per well (or cell): metadata and features.
    operations : sequence of str
        Of :data:`OPERATIONS`, applied in this order, each on the features the earlier ones left.
    samples : str
        ``"all"`` or a pandas query selecting the rows the statistics use.
    features : list of str, optional
        Candidate features; default those starting with Nuclei_, Cells_ or Cytoplasm_.
    min_variance, na_cutoff, corr_threshold, corr_method, blocklist
        The operations' settings.

    Returns
    -------
    list of str
        The features to drop, in the order of the columns.
    """
    unknown = [op for op in operations if op not in OPERATIONS]
    if unknown:
        raise ConfigError(f"feature selection operations must be among {', '.join(OPERATIONS)}; got {unknown}")
    features = features if features is not None else [c for c in profiles.columns if c.startswith(FEATURE_PREFIXES)]
    rows = profiles.loc[reference_rows(profiles, samples, "feature selection samples")]
    excluded: set[str] = set()
    for operation in operations:
        left = [f for f in features if f not in excluded]
        if operation == "variance_threshold":
            excluded.update(low_variance(rows[left], min_variance))
        elif operation == "drop_na_columns":
            excluded.update(mostly_missing(rows[left], na_cutoff))
        elif operation == "correlation_threshold":
            excluded.update(correlated(rows[left], corr_threshold, corr_method))
        else:
            excluded.update(set(blocklist) & set(left))
    return [c for c in profiles.columns if c in excluded]
