"""Normalize profiles per plate, as pycytominer's ``normalize`` does, one column at a time.

Each feature is centred and scaled by statistics of the *reference* rows
(all rows, or the rows a query selects, e.g. the negative-control wells):

- ``standardize``: mean and standard deviation (``ddof=0``), as
  scikit-learn's ``StandardScaler``;
- ``robustize``: median and interquartile range (25th-75th percentile), as
  ``RobustScaler``;
- ``mad_robustize``: median and median absolute deviation times 1.4826
  (plus 1e-18), as pycytominer's ``RobustMAD``.

Missing values are left out of the statistics and stay missing. A scale of
(nearly) zero becomes 1 for the first two (a constant feature is only
centred), as scikit-learn does; ``mad_robustize`` divides by ``epsilon``, as
pycytominer does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import ConfigError
from .parquet_parts import ParquetTable

METHODS = ("standardize", "robustize", "mad_robustize")
FEATURE_PREFIXES = ("Nuclei_", "Cells_", "Cytoplasm_")
#: pycytominer's default ``mad_robustize_epsilon``.
MAD_EPSILON = 1e-18


def reference_rows(profiles: pd.DataFrame, samples: str, option: str = "samples") -> np.ndarray:
    """Which rows are the reference: all (``"all"``) or those a pandas query selects.

    Raises
    ------
    ConfigError
        If the query does not evaluate on these columns, or selects no row;
        the message names ``option`` and the query.

    Examples
    --------
    >>> table = pd.DataFrame({"Metadata_type": ["negcon", "trt"], "x": [1.0, 2.0]})
    >>> reference_rows(table, "Metadata_type == 'negcon'").tolist()
    [True, False]
    """
    if samples == "all":
        return np.ones(len(profiles), dtype=bool)
    try:
        chosen = profiles.query(samples).index
    except Exception as err:  # pandas raises many kinds for a bad expression
        columns = ", ".join(c for c in profiles.columns if c.startswith("Metadata_"))
        raise ConfigError(
            f"{option} {samples!r} does not evaluate ({type(err).__name__}: {err}); the metadata columns are: {columns}"
        ) from None
    if len(chosen) == 0:
        raise ConfigError(f"{option} {samples!r} selects no row of {len(profiles)}; a reference needs at least one")
    return profiles.index.isin(chosen)


def _no_zero(scale: float) -> float:
    return 1.0 if scale < 10 * np.finfo(np.float64).eps else scale


def column_scaling(reference: np.ndarray, method: str) -> tuple[float, float]:
    """The centre and scale of one feature from its reference values (NaN left out).

    Examples
    --------
    >>> column_scaling(np.array([1.0, 2.0, 3.0, np.nan]), "standardize")
    (2.0, 0.816496580927726)
    >>> column_scaling(np.array([5.0, 5.0]), "robustize")
    (5.0, 1.0)
    """
    values = reference[~np.isnan(reference)]
    if values.size == 0:
        return float("nan"), float("nan")
    if method == "standardize":
        centre = float(values.mean())
        return centre, _no_zero(float(np.sqrt(np.mean((values - centre) ** 2))))
    if method == "robustize":
        low, centre, high = np.percentile(values, [25, 50, 75])
        return float(centre), _no_zero(float(high - low))
    if method == "mad_robustize":
        centre = float(np.median(values))
        return centre, float(1.4826 * np.median(np.abs(values - centre))) + MAD_EPSILON
    raise ConfigError(f"normalization method must be one of {', '.join(METHODS)}; got {method!r}")


def normalize_profiles(
    profiles: pd.DataFrame,
    method: str = "standardize",
    samples: str = "all",
    features: list[str] | None = None,
    option: str = "samples",
) -> pd.DataFrame:
    """``profiles`` with every feature centred and scaled by its reference rows' statistics.

    Parameters
    ----------
    profiles : DataFrame
        One row per cell or well: metadata columns and features.
    method : str
        One of :data:`METHODS`.
    samples : str
        ``"all"`` or a pandas query selecting the reference rows (``"Metadata_control_type == 'negcon'"``).
    features : list of str, optional
        Columns to normalize; default those starting with Nuclei_, Cells_ or Cytoplasm_.
    option : str
        Name of the option ``samples`` came from, for error messages.

    Returns
    -------
    DataFrame
        The same columns in the same order; features as float64.

    Examples
    --------
    >>> table = pd.DataFrame({"Metadata_Well": ["A01", "A02", "A03"], "Cells_Area": [1.0, 2.0, 3.0]})
    >>> normalize_profiles(table, "robustize")["Cells_Area"].tolist()
    [-1.0, 0.0, 1.0]
    """
    if method not in METHODS:
        raise ConfigError(f"normalization method must be one of {', '.join(METHODS)}; got {method!r}")
    features = features if features is not None else [c for c in profiles.columns if c.startswith(FEATURE_PREFIXES)]
    reference = reference_rows(profiles, samples, option)
    normalized = {}
    for feature in features:
        values = profiles[feature].to_numpy(dtype=np.float64, na_value=np.nan)
        centre, scale = column_scaling(values[reference], method)
        normalized[feature] = (values - centre) / scale
    return profiles.assign(**normalized)


def normalize_parquet(
    source: str,
    destination: str,
    method: str = "standardize",
    samples: str = "all",
    features: list[str] | None = None,
    option: str = "samples",
    columns_per_pass: int = 32,
    rows_per_batch: int = 16384,
) -> None:
    """:func:`normalize_profiles` from a Parquet file (or folder of parts) to a Parquet file, in bounded memory.

    The statistics are computed a few feature columns at a time (pass 1),
    then the rows are normalized and written a batch at a time (pass 2): the
    memory held is the metadata columns, ``columns_per_pass`` columns and
    one batch of rows, not the table (1M cells x 500 features: 4 GB). The
    values are those of :func:`normalize_profiles` (the same arithmetic per
    value); feature columns are written as float64.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if method not in METHODS:
        raise ConfigError(f"normalization method must be one of {', '.join(METHODS)}; got {method!r}")
    parquet = ParquetTable(source)  # a file or a folder of parts
    names = parquet.schema_arrow.names
    features = features if features is not None else [c for c in names if c.startswith(FEATURE_PREFIXES)]
    chosen = set(features)
    metadata = [c for c in names if c not in chosen]
    reference = reference_rows(parquet.read(columns=metadata).to_pandas(), samples, option)
    scaling: dict[str, tuple[float, float]] = {}
    for start in range(0, len(features), columns_per_pass):
        chunk = features[start : start + columns_per_pass]
        table = parquet.read(columns=chunk)
        for name in chunk:
            values = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
            scaling[name] = column_scaling(values[reference], method)
    fields = [pa.field(f.name, pa.float64()) if f.name in chosen else f for f in parquet.schema_arrow]
    schema = pa.schema(fields, metadata=parquet.schema_arrow.metadata)
    text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    with pq.ParquetWriter(destination, schema, use_dictionary=text) as writer:
        for batch in parquet.iter_batches(batch_size=rows_per_batch):
            columns = []
            for field in schema:
                column = batch.column(field.name)
                if field.name in chosen:
                    centre, scale = scaling[field.name]
                    values = column.to_numpy(zero_copy_only=False).astype(np.float64)
                    column = pa.array((values - centre) / scale, type=pa.float64())
                columns.append(column)
            writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
