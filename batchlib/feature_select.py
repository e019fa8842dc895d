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
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from .errors import ConfigError
from .normalize import FEATURE_PREFIXES, reference_rows
from .parquet_parts import ParquetTable

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
    dropped = _low_variance_columns(values, min_variance)
    if len(values.columns) and len(dropped) == len(values.columns):
        raise ConfigError(f"no feature has a variance above min_variance {min_variance:g}: every feature would go")
    return dropped


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
    return _correlated_from(matrix, list(values.columns), threshold)


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
    _check_settings(operations, min_variance, na_cutoff, corr_threshold)
    features = features if features is not None else [c for c in profiles.columns if c.startswith(FEATURE_PREFIXES)]
    rows = profiles.loc[reference_rows(profiles, samples, "feature selection samples")]
    excluded = _apply_operations(
        operations,
        features,
        low=set(_low_variance_columns(rows[features], min_variance)),
        missing=set(mostly_missing(rows[features], na_cutoff)),
        correlated_among=lambda left: correlated(rows[left], corr_threshold, corr_method),
        blocklist=blocklist,
        min_variance=min_variance,
    )
    return [c for c in profiles.columns if c in excluded]


def _check_settings(operations: Sequence[str], min_variance: float, na_cutoff: float, corr_threshold: float) -> None:
    unknown = [op for op in operations if op not in OPERATIONS]
    if unknown:
        raise ConfigError(f"feature selection operations must be among {', '.join(OPERATIONS)}; got {unknown}")
    if min_variance < 0 or not 0 <= na_cutoff <= 1 or not 0 <= corr_threshold <= 1:
        raise ConfigError(
            f"min_variance must be at least 0, na_cutoff and corr_threshold between 0 and 1; got {min_variance}, "
            f"{na_cutoff}, {corr_threshold}"
        )


def _apply_operations(
    operations: Sequence[str],
    features: list[str],
    low: set[str],
    missing: set[str],
    correlated_among: Callable[[list[str]], list[str]],
    blocklist: Sequence[str],
    min_variance: float,
) -> set[str]:
    """The features the operations drop, in order, each on the features the earlier ones left.

    A feature's variance and missing share do not depend on the other
    features, so they come computed (``low``, ``missing``); the correlations
    do, so ``correlated_among(left)`` computes them on what is left.
    """
    excluded: set[str] = set()
    for operation in operations:
        left = [f for f in features if f not in excluded]
        if operation == "variance_threshold":
            if left and set(left) <= low:
                raise ConfigError(f"no feature has a variance above min_variance {min_variance:g}: all would go")
            excluded.update(low & set(left))
        elif operation == "drop_na_columns":
            excluded.update(missing & set(left))
        elif operation == "correlation_threshold":
            excluded.update(correlated_among(left))
        else:
            excluded.update(set(blocklist) & set(left))
    return excluded


def select_features_parquet(
    path: str,
    operations: Sequence[str] = ("variance_threshold",),
    samples: str = "all",
    features: list[str] | None = None,
    min_variance: float = 1e-6,
    na_cutoff: float = 0.05,
    corr_threshold: float = 0.9,
    blocklist: Sequence[str] = (),
    rows_per_batch: int = 16384,
    columns_per_pass: int = 8,
) -> list[str]:
    """:func:`select_features` on a Parquet file, in bounded memory and without a pairwise loop.

    Per-feature statistics are read a few columns at a time; the Pearson
    correlations are sums accumulated over batches of rows with matrix
    products, pairwise-complete as pandas' ``DataFrame.corr`` computes them
    where values are missing (which pycytominer then uses, one pair at a
    time: most of its time in ``bench/profiling.py``). Only the memory of a batch
    of rows and a features x features matrix is held. The correlations
    equal pandas' to about 1e-12 (1e-9 for a feature whose mean is a
    million times its spread: both lose digits subtracting it), so a pair is
    decided differently only if its correlation lies that close to the
    threshold, or two features tie exactly in their sums of correlations
    (duplicated features). Pearson only.
    """

    _check_settings(operations, min_variance, na_cutoff, corr_threshold)
    parquet = ParquetTable(path)  # a file or a folder of parts
    names = parquet.schema_arrow.names
    features = features if features is not None else [c for c in names if c.startswith(FEATURE_PREFIXES)]
    metadata = parquet.read(columns=[c for c in names if c not in set(features)]).to_pandas()
    reference = reference_rows(metadata, samples, "feature selection samples")
    # Each feature's own statistics in one pass, a few columns at a time.
    low, missing = set(), set()
    if {"variance_threshold", "drop_na_columns"} & set(operations):
        for start in range(0, len(features), columns_per_pass):
            chunk = features[start : start + columns_per_pass]
            table = parquet.read(columns=chunk).to_pandas()
            table = table if reference.all() else table[reference]
            low.update(_low_variance_columns(table, min_variance))
            missing.update(mostly_missing(table, na_cutoff))

    def correlated_among(left: list[str]) -> list[str]:
        return _correlated_from(_streamed_correlation(parquet, left, reference, rows_per_batch), left, corr_threshold)

    excluded = _apply_operations(operations, features, low, missing, correlated_among, blocklist, min_variance)
    return [c for c in names if c in excluded]


def _low_variance_columns(values: pd.DataFrame, min_variance: float) -> list[str]:
    """The columns :func:`low_variance` drops (without its check that some feature is left)."""
    array = values.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column: NaN variance, excluded
        variances = np.nanvar(array, axis=0)
        if min_variance == 0:  # scikit-learn compares the peak-to-peak range too
            variances = np.nanmin(np.array([variances, np.ptp(array, axis=0)]), axis=0)
    return [c for c, kept in zip(values.columns, variances > min_variance) if not kept]


def _correlated_from(matrix: np.ndarray, columns: list[str], threshold: float) -> list[str]:
    """Of each pair above ``threshold`` in a correlation matrix, the feature with the larger sum of |correlations|."""
    # pandas' abs().sum() leaves NaN out; sort_values puts the ranks in the order pycytominer uses.
    rank = pd.Series(np.nansum(np.abs(matrix), axis=0), index=columns).sort_values().index.get_indexer(columns)
    with np.errstate(invalid="ignore"):
        rows, cols = np.nonzero(np.tril(matrix > threshold, k=-1))
    excluded = {columns[a] if rank[a] > rank[b] else columns[b] for a, b in zip(rows, cols)}
    return [c for c in columns if c in excluded]


def _batches(parquet, columns: list[str], reference: np.ndarray, rows_per_batch: int):
    """The reference rows of ``columns`` as float64 matrices, a batch of rows at a time."""
    everything = bool(reference.all())
    offset = 0
    for batch in parquet.iter_batches(batch_size=rows_per_batch, columns=columns):
        n = batch.num_rows
        matrix = np.empty((n, len(columns)), order="F")  # column by column, as Arrow holds them
        for k, name in enumerate(columns):
            matrix[:, k] = batch.column(name).to_numpy(zero_copy_only=False)
        yield matrix if everything else matrix[reference[offset : offset + n]]
        offset += n


def _streamed_correlation(parquet, columns: list[str], reference: np.ndarray, rows_per_batch: int) -> np.ndarray:
    """Pearson correlations of ``columns`` over the reference rows, pairwise-complete, from sums over row batches.

    One pass. Values are shifted by each column's mean in the first batch
    that has values of it before summing, so that the sums of products do
    not lose precision to large means. Pairs involving a column with a
    missing value in a batch take thin extra products; the rest one
    ``z.T @ z``.
    """
    size = len(columns)
    shift = np.full(size, np.nan)
    low, high = np.full(size, np.inf), np.full(size, -np.inf)
    pairs = np.zeros((size, size))  # rows where both are present
    sums = np.zeros((size, size))  # [i, j]: sum of z_i where j is present too
    squares = np.zeros((size, size))  # [i, j]: sum of z_i**2 where j is present too
    products = np.zeros((size, size))
    for matrix in _batches(parquet, columns, reference, rows_per_batch):
        finite = np.isfinite(matrix)
        unset = np.isnan(shift) & finite.any(axis=0)
        if unset.any():  # a column's first values: its shift (nothing was summed for it before)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                shift[unset] = np.nanmean(np.where(finite, matrix, np.nan), axis=0)[unset]
        low = np.minimum(low, np.where(finite, matrix, np.inf).min(axis=0, initial=np.inf))
        high = np.maximum(high, np.where(finite, matrix, -np.inf).max(axis=0, initial=-np.inf))
        z = np.where(finite, matrix - np.nan_to_num(shift), 0.0)
        products += z.T @ z
        gaps = np.flatnonzero(~finite.all(axis=0))  # columns with a missing value in this batch
        full = np.setdiff1d(np.arange(size), gaps)
        # Pairs of two complete columns: every row counts.
        pairs[np.ix_(full, full)] += len(z)
        column_sums, column_squares = z.sum(axis=0), (z * z).sum(axis=0)
        sums[:, full] += column_sums[:, None]
        squares[:, full] += column_squares[:, None]
        if len(gaps):  # pairs with a gappy column: only the rows where it is present
            present = finite[:, gaps].astype(np.float64)
            counted = finite.astype(np.float64).T @ present  # size x gaps: rows where both are present
            pairs[:, gaps] += counted
            pairs[np.ix_(gaps, full)] += counted[full].T
            sums[:, gaps] += z.T @ present
            squares[:, gaps] += (z * z).T @ present
    with np.errstate(all="ignore"):
        covariance = products - sums * sums.T / pairs
        var_i = squares - sums**2 / pairs
        correlation = covariance / np.sqrt(var_i * var_i.T)
    correlation[pairs < 2] = np.nan
    constant = low >= high  # no variance (or no value): NaN, as pandas gives, not rounding noise
    correlation[constant, :] = np.nan
    correlation[:, constant] = np.nan
    return np.clip(correlation, -1.0, 1.0)
