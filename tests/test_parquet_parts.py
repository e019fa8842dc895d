import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchlib.parquet_parts import PART, ParquetTable, part_names, parts_to_merge


@pytest.fixture
def table_and_parts(tmp_path):
    """A table of 1,000 rows, as one file and as a folder of three parts."""
    rng = np.random.default_rng(0)
    table = pa.table({"Metadata_Well": np.repeat(["A01", "A02", "B01", "B02"], 250), "f": rng.random(1000)})
    pq.write_table(table, tmp_path / "one.parquet")
    folder = tmp_path / "parts.parquet"
    folder.mkdir()
    for i, (start, stop) in enumerate([(0, 600), (600, 900), (900, 1000)]):
        pq.write_table(table.slice(start, stop - start), folder / PART.format(i))
    return table, tmp_path / "one.parquet", folder


def test_a_folder_of_parts_reads_as_the_file(table_and_parts):
    table, one, folder = table_and_parts
    assert part_names(folder) == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    for path in (one, folder):
        parts = ParquetTable(str(path))
        assert parts.num_rows == 1000 and parts.schema_arrow.names == ["Metadata_Well", "f"]
        assert parts.read().equals(table)
        assert parts.read(columns=["f"]).column("f").equals(table.column("f"))
        batches = list(parts.iter_batches(batch_size=256, columns=["f"]))
        assert max(len(b) for b in batches) <= 256
        assert pa.Table.from_batches(batches).column("f").equals(table.column("f"))
    pd.testing.assert_frame_equal(pd.read_parquet(folder), table.to_pandas())  # pandas reads the folder alike
    (folder / ".batchlib-tmp-0-part-00003.parquet").write_bytes(b"half")  # what a reader of parts skips
    assert len(part_names(folder)) == 3 and ParquetTable(str(folder)).read().equals(table)


def test_the_readers_the_readme_names_take_the_folder_by_its_path(table_and_parts):
    """pyarrow, pycytominer's load_profiles and DuckDB read a folder of parts as the table, rows in order."""
    import duckdb
    from pycytominer.cyto_utils.load import load_profiles

    table, _, folder = table_and_parts
    assert pq.read_table(folder).equals(table)
    pd.testing.assert_frame_equal(load_profiles(str(folder)), table.to_pandas())
    with duckdb.connect() as connection:
        from_duckdb = connection.execute(f"SELECT * FROM '{folder}'").fetchnumpy()
    np.testing.assert_array_equal(from_duckdb["f"], table.column("f").to_numpy())
    assert list(from_duckdb["Metadata_Well"]) == table.column("Metadata_Well").to_pylist()


def test_an_empty_folder_is_an_error_naming_it(tmp_path):
    (tmp_path / "empty.parquet").mkdir()
    with pytest.raises(FileNotFoundError, match="empty.parquet"):
        ParquetTable(str(tmp_path / "empty.parquet"))


def test_parts_stay_few_as_parts_of_one_size_are_added():
    rows, rewritten = [1000], 0
    for _ in range(100):
        rows.append(10)
        k = parts_to_merge(rows)
        if k > 1:
            rewritten += sum(rows[-k:])
            rows = [*rows[:-k], sum(rows[-k:])]
    assert sum(rows) == 2000 and rows[0] == 1000  # the first part (the plate so far) never rewritten
    assert len(rows) <= 8  # about log2(100) parts
    assert rewritten <= 10 * 100 * 7  # each added row rewritten about log2(100) times, not 100
