"""Tables in the plate-viewer layout, as pandas DataFrames.

A table is a group ``/tables/<name>`` (the name may be nested) with three
datasets::

    cells     2D strings, rows x columns (missing values are "nan")
    columns   1D strings, the column names
    visible   1D uint8, 0 hides a column in the viewer

Strings are UTF-8, fixed width computed from the data (never cut). The group
attribute ``dtypes`` (JSON) records each column's pandas dtype, so
:func:`read_table` gives back the frame that was written: ints, floats, NaN,
bools, nullable ints and strings of any length. N5 has no string type and Zarr 3
no stable one: there ``cells`` and ``columns`` hold the UTF-8 bytes as uint8
with the string length as the last axis (``string_layout = "uint8-fixed"``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ContainerError
from .threads import THREADS, thread_map

TABLES = "tables"
NAN = b"nan"
#: Tables with at least this many cells are converted in threads.
_PARALLEL_CELLS = 100_000


# ------------------------------------------------------------ values <-> bytes
def _numbers_to_bytes(values) -> np.ndarray:
    """Numbers (missing ones as nulls) to fixed-width ASCII bytes, via Arrow.

    Arrow writes the shortest text that parses back to the same float, six
    times faster than numpy; padding with NUL bytes to a common width gives
    exactly numpy's ``S<width>`` memory layout, so no copy is needed.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.fill_null(pc.cast(pa.array(values), pa.string()), NAN.decode())
    width = max(1, pc.max(pc.utf8_length(text)).as_py() or 1)
    padded = pc.utf8_rpad(text, width=width, padding="\x00")
    if len(padded) == 0:
        return np.array([], dtype=f"S{width}")
    return np.frombuffer(padded.buffers()[2], dtype=f"S{width}", count=len(padded), offset=padded.offset * width)


def _format_plain_numbers(table: pd.DataFrame, parallel: bool = False) -> dict[int, np.ndarray]:
    """Column index -> bytes, for the columns of numpy number dtypes.

    Columns of one dtype are formatted together, in one Arrow call per block of
    columns (the cost of a call is per column, not per value: a table of few
    rows formatted a column at a time costs twice as much). With ``parallel``
    the columns are split into one block per thread.
    """
    by_dtype: dict[np.dtype, list[int]] = {}
    for j, dtype in enumerate(table.dtypes):
        if isinstance(dtype, np.dtype) and dtype.kind in "iuf":
            by_dtype.setdefault(dtype, []).append(j)
    blocks = []
    for indices in by_dtype.values():
        n_blocks = min(THREADS, len(indices)) if parallel else 1
        blocks += [list(block) for block in np.array_split(indices, n_blocks)]

    def format_block(indices: list[int]) -> np.ndarray:
        block = table.iloc[:, indices].to_numpy().T.reshape(-1)  # column after column
        return _numbers_to_bytes(block).reshape(len(indices), len(table))

    formatted = {}
    for indices, text in zip(blocks, thread_map(format_block, blocks, parallel=parallel)):
        formatted.update({j: text[i] for i, j in enumerate(indices)})
    return formatted


def _column_to_bytes(series: pd.Series) -> np.ndarray:
    """One column as a 1D array of UTF-8 bytes (``S`` dtype)."""
    dtype = series.dtype
    values = series.to_numpy()
    if pd.api.types.is_bool_dtype(dtype) and dtype is not np.dtype(object):
        if isinstance(dtype, pd.BooleanDtype):
            out = np.where(
                series.isna().to_numpy(), NAN, np.where(series.fillna(False).to_numpy(bool), b"True", b"False")
            )
            return out.astype("S5")
        return np.where(values, b"True", b"False").astype("S5")
    if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
        return _numbers_to_bytes(series.array if isinstance(dtype, pd.api.extensions.ExtensionDtype) else values)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return np.array([NAN if pd.isna(v) else str(v).encode() for v in series], dtype=object).astype(bytes)
    # strings and everything else: str(value), UTF-8; missing -> nan
    encoded = [NAN if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v).encode("utf-8") for v in values]
    return np.array(encoded, dtype=bytes) if encoded else np.array([], dtype="S1")


def _bytes_to_arrow_text(raw: np.ndarray):
    """A column of fixed-width bytes as an Arrow string array (NUL padding removed)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    raw = np.ascontiguousarray(raw)
    width = max(raw.dtype.itemsize, 1)
    if raw.dtype.itemsize == 0:
        raw = raw.astype("S1")
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(raw), [None, pa.py_buffer(raw)])
    return pc.utf8_rtrim(pc.cast(pc.cast(fixed, pa.binary()), pa.string()), characters="\x00")


def _parse_numbers(raw: np.ndarray, dtype: str) -> pd.Series:
    """Parse a column of numbers with Arrow (which, unlike numpy, lets other threads run)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = _bytes_to_arrow_text(raw)
    if dtype.startswith(("Int", "UInt")):  # nullable: "nan" marks a missing value
        text = pc.if_else(pc.equal(text, NAN.decode()), pa.scalar(None, pa.string()), text)
        return pd.Series(pd.array(pc.cast(text, pa.int64()).to_pandas(types_mapper=pd.ArrowDtype)).astype(dtype))
    target = pa.uint64() if dtype.startswith("uint") else pa.int64() if dtype.startswith("int") else pa.float64()
    values = pc.cast(text, target).to_numpy(zero_copy_only=False)
    return pd.Series(values.astype(dtype, copy=False))


def _column_from_bytes(raw: np.ndarray, dtype: str) -> pd.Series:
    """Inverse of :func:`_column_to_bytes` for a column written with ``dtype``."""
    if dtype.startswith(("int", "uint", "float", "Int", "UInt")):
        return _parse_numbers(raw, dtype)
    if dtype == "bool":
        return pd.Series(raw == b"True")
    if dtype == "boolean":
        values = pd.array([None if v == NAN else v == b"True" for v in raw], dtype="boolean")
        return pd.Series(values)
    if dtype.startswith("datetime64"):
        return pd.Series(pd.to_datetime([None if v == NAN else v.decode() for v in raw])).astype(dtype)
    strings = [None if v == NAN else v.decode("utf-8") for v in raw]
    return pd.Series(strings, dtype=object if dtype == "object" else dtype)


def _write_cells(group, columns: list[np.ndarray], n_rows: int, as_uint8: bool, chunk_rows: int) -> None:
    """Write the ``cells`` dataset block by block of rows (cache-friendly, little memory)."""
    width = max([1] + [c.dtype.itemsize for c in columns])
    n_cols = max(1, len(columns))
    # About 1 MiB per chunk, so compression spreads over threads and reading a few rows stays cheap.
    rows_per_chunk = max(1, min(chunk_rows or (1 << 20) // (n_cols * width), n_rows))
    shape: tuple[int, ...] = (n_rows, len(columns))
    dtype: np.dtype = np.dtype(f"S{width}")
    if as_uint8:  # the string as the last axis; N5 cannot store empty arrays
        shape, dtype = (max(n_rows, 1), len(columns), width), np.dtype(np.uint8)
    chunks = (rows_per_chunk, n_cols) + ((width,) if as_uint8 else ())
    dataset = group.create_dataset("cells", shape=shape, dtype=dtype, chunks=chunks if n_rows else None)
    block_rows = rows_per_chunk * 16
    for start in range(0, n_rows, block_rows):
        stop = min(start + block_rows, n_rows)
        block = np.empty((stop - start, len(columns)), dtype=f"S{width}")
        for j, column in enumerate(columns):
            block[:, j] = column[start:stop]
        if as_uint8:
            block = _bytes_to_uint8(block)
        group.backend.write(dataset, block, offset=(start,) + (0,) * (block.ndim - 1))


def _bytes_to_uint8(array: np.ndarray) -> np.ndarray:
    width = max(array.dtype.itemsize, 1)
    return np.ascontiguousarray(array).view(np.uint8).reshape(*array.shape, width)


def _uint8_to_bytes(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array).view(f"S{array.shape[-1]}")[..., 0]


# ------------------------------------------------------------------- storage
def table_key(name: str) -> str:
    """The group of table ``name``: ``tables/<name>``."""
    name = name.strip("/")
    if not name:
        raise ContainerError("a table needs a name")
    return f"{TABLES}/{name}"


@dataclass(frozen=True)
class EncodedTable:
    """A table as :func:`write_table` stores it, made by :func:`encode_table`.

    Encoding (formatting every value as text) is the costly part of writing
    a table and needs no container: a job can encode in its computing
    threads and only write in the thread that holds the container.
    """

    columns: tuple[str, ...]  #: column names
    cells: tuple[np.ndarray, ...]  #: per column, the values as UTF-8 bytes (``S`` dtype)
    visible: tuple[bool, ...]  #: per column
    dtypes: tuple[str, ...]  #: per column, the pandas dtype :func:`read_table` restores
    n_rows: int


def encode_table(table: pd.DataFrame, visible: Sequence[bool] | None = None, name: str = "") -> EncodedTable:
    """The bytes :func:`write_table` stores for ``table`` (see there); ``name`` only for error messages.

    Examples
    --------
    >>> encoded = encode_table(pd.DataFrame({"label_id": [1, 2], "area": [10.5, float("nan")]}))
    >>> encoded.cells[1].tolist(), encoded.dtypes
    ([b'10.5', b'nan'], ('int64', 'float64'))
    """
    if not isinstance(table, pd.DataFrame):
        raise ContainerError(f"write_table({name!r}) expects a pandas DataFrame, got {type(table).__name__}")
    columns = [str(c) for c in table.columns]
    if len(set(columns)) != len(columns):
        raise ContainerError(f"table {name!r} has duplicate column names")
    if visible is None:
        visible = [True] * len(columns)
    if len(visible) != len(columns):
        raise ContainerError(f"table {name!r}: {len(visible)} visible flags for {len(columns)} columns")
    parallel = table.size >= _PARALLEL_CELLS
    formatted = _format_plain_numbers(table, parallel)  # Arrow formats numbers without the GIL
    others = [j for j in range(len(columns)) if j not in formatted]  # text, bools, nullable numbers, ...
    formatted.update(zip(others, thread_map(lambda j: _column_to_bytes(table.iloc[:, j]), others, parallel=parallel)))
    dtype_names = {dtype: str(dtype) for dtype in set(table.dtypes)}  # str() of a dtype is slow: once per dtype
    return EncodedTable(
        columns=tuple(columns),
        cells=tuple(formatted[j] for j in range(len(columns))),
        visible=tuple(bool(v) for v in visible),
        dtypes=tuple(dtype_names[dtype] for dtype in table.dtypes),
        n_rows=len(table),
    )


def write_table(
    f,
    name: str,
    table: pd.DataFrame | EncodedTable,
    visible: Sequence[bool] | None = None,
    chunk_rows: int | None = None,
) -> None:
    """Write a DataFrame as table ``/tables/<name>`` (replacing one of that name).

    Parameters
    ----------
    f : Group
        An open container.
    name : str
        Table name, may be nested (``"cell_segmentation/default"``).
    table : DataFrame or EncodedTable
        The values; the index is not stored (reset it first to keep it).
        Or the table already encoded (:func:`encode_table`).
    visible : list of bool, optional
        Per column; default all visible (for an encoded table: given to :func:`encode_table`).
    chunk_rows : int, optional
        Rows per chunk on disk; default about 1 MiB per chunk.

    Examples
    --------
    >>> import tempfile, os
    >>> from batchlib.io import open_file
    >>> path = os.path.join(tempfile.mkdtemp(), "t.h5")
    >>> df = pd.DataFrame({"label_id": [1, 2], "area": [10.5, float("nan")], "name": ["a", "ünï"]})
    >>> with open_file(path, "w") as f:
    ...     write_table(f, "cells/default", df)
    ...     read_table(f, "cells/default").equals(df)
    True
    """
    if isinstance(table, EncodedTable):
        if visible is not None:
            raise ContainerError(f"table {name!r} is encoded already: give visible to encode_table")
        encoded = table
    else:
        encoded = encode_table(table, visible, name)
    columns = encoded.columns
    names = np.array([c.encode("utf-8") for c in columns], dtype=bytes) if columns else np.array([], "S1")
    key = table_key(name)
    if key in f:
        del f[key]
    group = f.create_group(key)
    as_uint8 = _no_string_type(group)
    _write_cells(group, list(encoded.cells), encoded.n_rows, as_uint8, chunk_rows)
    if as_uint8:
        names = _bytes_to_uint8(names) if len(names) else np.zeros((1, 1), np.uint8)
    group.create_dataset("columns", data=names)
    group.create_dataset("visible", data=np.array(encoded.visible, dtype=np.uint8))
    group.attrs["dtypes"] = json.dumps(list(encoded.dtypes))
    group.attrs["n_rows"] = encoded.n_rows
    group.attrs["string_layout"] = "uint8-fixed" if as_uint8 else "bytes-fixed"


def _no_string_type(group) -> bool:
    # N5 has no string type; Zarr 3 has no stable one (zarr-python warns).
    if group.backend.name == "n5":
        return True
    return group.backend.name == "zarr" and group.native.metadata.zarr_format == 3


def has_table(f, name: str) -> bool:
    """True if table ``name`` exists."""
    return f"{table_key(name)}/cells" in f


def read_table(f, name: str) -> pd.DataFrame:
    """Read table ``name`` back as a DataFrame with its original dtypes.

    Tables written by other tools (no ``dtypes`` attribute) come back with
    numbers parsed where a whole column parses, strings otherwise.
    """
    key = table_key(name)
    if f"{key}/cells" not in f:
        raise ContainerError(f"{f.filename} has no table {name!r} (expected a group {key} with cells, columns)")
    group = f[key]
    cells = group.backend.read(group["cells"])
    names = group["columns"][...]
    if group.attrs.get("string_layout") == "uint8-fixed":
        cells, names = _uint8_to_bytes(cells), _uint8_to_bytes(names)
    cells, names = np.asarray(cells), np.asarray(names)
    n_rows = int(group.attrs.get("n_rows", len(cells)))
    dtypes = json.loads(group.attrs["dtypes"]) if "dtypes" in group.attrs else None
    cells = cells[:n_rows]
    names = names[: len(dtypes)] if dtypes is not None else names
    if cells.dtype == object:  # variable-length strings written by other tools
        cells = np.array([[_encode(v) for v in row] for row in cells], dtype=bytes).reshape(cells.shape)
    columns = [_decode(c) for c in names]
    dtypes = dtypes if dtypes is not None else [None] * len(columns)
    cells = cells.reshape(len(cells), len(columns)) if cells.size else np.empty((len(cells), len(columns)), "S1")

    parallel = cells.size >= _PARALLEL_CELLS
    # A small table's plain numbers are parsed in one call per dtype: the cost of a call is per column.
    blocks = [] if parallel else _parse_plain_numbers(cells, dtypes)
    in_blocks = {j for indices, _ in blocks for j in indices}
    rest = [j for j in range(len(columns)) if j not in in_blocks]

    def parse(j: int) -> pd.Series:
        raw = cells[:, j]
        return _column_from_bytes(raw, dtypes[j]) if dtypes[j] else _guess_column(raw)

    parsed = thread_map(parse, rest, parallel=parallel)
    # Each dtype's numbers become one block of the frame (not a column at a time: a third of the time of a
    # small table); the other columns go in as arrays, not Series (no index alignment).
    pieces = [pd.DataFrame(values.T, columns=[columns[j] for j in indices]) for indices, values in blocks]
    if rest or not pieces:
        pieces.append(
            pd.DataFrame(
                {columns[j]: series.array for j, series in zip(rest, parsed)}, columns=[columns[j] for j in rest]
            )
        )
    frame = pieces[0] if len(pieces) == 1 else pd.concat(pieces, axis=1)
    return frame if list(frame.columns) == columns else frame[columns]


def _parse_plain_numbers(cells: np.ndarray, dtypes: list[str | None]) -> list[tuple[list[int], np.ndarray]]:
    """The columns of numpy number dtypes parsed a dtype at a time: (column indices, values (columns, rows)) each."""
    by_dtype: dict[str, list[int]] = {}
    for j, dtype in enumerate(dtypes):
        if dtype and dtype.startswith(("int", "uint", "float")):
            by_dtype.setdefault(dtype, []).append(j)
    blocks = []
    for dtype, indices in by_dtype.items():
        block = np.ascontiguousarray(cells[:, indices].T).reshape(-1)  # column after column
        blocks.append((indices, _parse_numbers(block, dtype).to_numpy().reshape(len(indices), len(cells))))
    return blocks


def _encode(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def _decode(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _guess_column(raw: np.ndarray) -> pd.Series:
    try:
        return pd.Series(raw.astype(np.float64))
    except ValueError:
        return pd.Series([v.decode("utf-8") for v in raw], dtype=object)


def table_visible(f, name: str) -> list[bool]:
    """The ``visible`` flags of table ``name``."""
    return [bool(v) for v in f[f"{table_key(name)}/visible"][...]]


# ------------------------------------------------------- the plate table file
#: First columns of the plate-level tables, by kind.
PLATE_TABLE_KEYS = {"images": ("image_name", "site_name"), "wells": ("well_name",)}


def plate_table_path(folder: str, plate_name: str | None = None) -> str:
    """``<folder>/<plate>_table.hdf5`` (the ``.hdf5`` ending keeps it out of ``*.h5``)."""
    plate_name = plate_name or os.path.basename(os.path.abspath(folder))
    return os.path.join(folder, f"{plate_name}_table.hdf5")


def write_plate_table(
    f, kind: str, table: pd.DataFrame, name: str = "default", visible: Sequence[bool] | None = None
) -> None:
    """Write an image table (``kind="images"``) or well table (``"wells"``) into the plate table file.

    Image tables start with ``image_name`` (hidden in the viewer) and
    ``site_name``; well tables with ``well_name``.
    """
    if kind not in PLATE_TABLE_KEYS:
        raise ContainerError(f"plate table kind must be 'images' or 'wells', got {kind!r}")
    first = PLATE_TABLE_KEYS[kind]
    if tuple(table.columns[: len(first)]) != first:
        found = ", ".join(map(str, table.columns[:3]))
        raise ContainerError(f"a {kind} table must start with the columns {', '.join(first)}; got {found}")
    if visible is None:
        visible = [not (kind == "images" and c == "image_name") for c in table.columns]
    write_table(f, f"{kind}/{name}", table, visible=visible)


def read_plate_table(f, kind: str, name: str = "default") -> pd.DataFrame:
    """Read an image or well table from the plate table file."""
    return read_table(f, f"{kind}/{name}")
