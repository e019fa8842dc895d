"""A Parquet table stored as one file or as a folder of parts, and how a folder of parts grows.

A plate's single-cell profiles are a folder ``<plate>_single_cell.parquet/``
of ``part-00000.parquet``, ``part-00001.parquet``, ...: their rows in the
order of the names are the table. pandas, pyarrow, pycytominer and DuckDB read
such a folder by its path as they read a file. A watcher's export adds the
rows of new images as a new part instead of rewriting the table;
:func:`parts_to_merge` keeps the parts few.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

#: File name of part ``i`` of a folder of parts.
PART = "part-{:05d}.parquet"


def part_names(folder: str) -> list[str]:
    """The parts of ``folder``, in row order."""
    return sorted(name for name in os.listdir(folder) if name.startswith("part-") and name.endswith(".parquet"))


def parts_to_merge(rows: Sequence[int]) -> int:
    """How many of the newest parts (the last of ``rows``) to merge into one.

    The newest parts are merged while the part before them holds no more
    rows than they do together, as the digits of a binary counter carry: a
    folder that gains parts of similar size keeps about log2(parts added)
    of them, and a row is rewritten about that many times, not once per part
    added. 1 means nothing to merge.

    Examples
    --------
    >>> parts_to_merge([76800, 800]), parts_to_merge([76800, 800, 800]), parts_to_merge([76800, 1600, 800, 800])
    (1, 2, 3)
    >>> parts_to_merge([800]), parts_to_merge([100, 800])
    (1, 2)
    """
    k = 1
    while k < len(rows) and rows[-k - 1] <= sum(rows[-k:]):
        k += 1
    return k


class ParquetTable:
    """A Parquet file or a folder of parts, read as ``pyarrow.parquet.ParquetFile`` reads one file.

    Parameters
    ----------
    path : str
        A ``.parquet`` file, or a folder of them (read in the order of their names).
    """

    def __init__(self, path: str):
        import pyarrow.parquet as pq

        #: the files, in row order (one for a plain file)
        self.paths = [os.path.join(path, name) for name in part_names(path)] if os.path.isdir(path) else [path]
        if not self.paths:
            raise FileNotFoundError(f"{path}: a folder without parts (part-00000.parquet, ...)")
        self.files = [pq.ParquetFile(file) for file in self.paths]
        self.schema_arrow = self.files[0].schema_arrow

    @property
    def num_rows(self) -> int:
        return sum(file.metadata.num_rows for file in self.files)

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """The table (or the ``columns``), every part's rows in order."""
        import pyarrow as pa

        tables = [file.read(columns=columns) for file in self.files]
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    def iter_batches(self, batch_size: int = 65536, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Record batches of at most ``batch_size`` rows, part after part."""
        for file in self.files:
            yield from file.iter_batches(batch_size=batch_size, columns=columns)
