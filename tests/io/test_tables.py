"""Tables: awkward values round-trip with their dtypes on every backend; the plate table file."""

import numpy as np
import pandas as pd
import pytest

from batchlib.errors import ContainerError
from batchlib.io import (
    encode_table,
    open_file,
    plate_table_path,
    read_plate_table,
    read_table,
    write_plate_table,
    write_table,
)
from batchlib.io.tables import table_key, table_visible


def awkward_table() -> pd.DataFrame:
    long_text = "ünïcødé ✓ " * 2000  # 20k characters: earlier tools cut at 100 bytes
    return pd.DataFrame(
        {
            "label_id": np.array([1, 2, 3, 4, 5], dtype=np.uint32),
            "int64": np.array([0, -1, 2**62, -(2**62), 7], dtype=np.int64),
            "int8": np.array([1, -2, 3, -4, 127], dtype=np.int8),
            "float": [0.1, np.nan, np.inf, -0.0, 1e-308],
            "float32": np.array([1.5, np.nan, -2.25, 3e38, 0], dtype=np.float32),
            "bool": [True, False, True, False, True],
            "nullable_int": pd.array([1, None, 3, None, 5], dtype="Int64"),
            "nullable_bool": pd.array([True, None, False, True, None], dtype="boolean"),
            "text": ["plain", long_text, "", None, 'quotes " , \n newline'],
            "emoji": ["🧫", "🔬", "a,b", "nan?", "x"],
        }
    )


def test_awkward_values_round_trip(container):
    table = awkward_table()
    with open_file(container, "a") as f:
        write_table(f, "cell_segmentation/default", table)
    with open_file(container, "r") as f:
        back = read_table(f, "cell_segmentation/default")
    assert list(back.dtypes) == list(table.dtypes)
    pd.testing.assert_frame_equal(back, table)
    assert back["text"][1] == table["text"][1] and len(back["text"][1]) == 20000


def test_large_table_round_trip(container):
    """Tables of 100k cells and more are converted a column per thread (small ones a dtype at a time)."""
    rng = np.random.default_rng(0)
    n = 20_000
    table = pd.DataFrame(
        {
            "label_id": np.arange(1, n + 1, dtype=np.uint32),
            "area": rng.integers(0, 10**6, n),
            "mean": rng.normal(size=n),
            "small": rng.normal(size=n).astype(np.float32),
            "nullable": pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(0, 9, n)), dtype="Int64"),
            "well": rng.choice(["A01", "B02"], n).astype(object),
        }
    )
    assert table.size >= 100_000
    with open_file(container, "a") as f:
        write_table(f, "big", table)
    with open_file(container, "r") as f:
        back = read_table(f, "big")
    pd.testing.assert_frame_equal(back, table)


def test_layout_is_what_the_viewer_reads(tmp_path):
    import h5py

    path = str(tmp_path / "t.h5")
    table = pd.DataFrame({"label_id": [1, 2], "area": [3.5, 4.0]})
    with open_file(path, "w") as f:
        write_table(f, "cell_segmentation/nuclei", table, visible=[False, True])
    with h5py.File(path, "r") as f:
        group = f["tables/cell_segmentation/nuclei"]
        assert sorted(group) == ["cells", "columns", "visible"]
        assert group["cells"].shape == (2, 2) and group["cells"].dtype.kind == "S"
        assert [c.decode() for c in group["columns"][...]] == ["label_id", "area"]
        assert group["visible"][...].tolist() == [0, 1]
        assert group["cells"][1, 1] == b"4" and group["cells"][0, 0] == b"1"
    with open_file(path, "r") as f:
        assert table_visible(f, "cell_segmentation/nuclei") == [False, True]


def test_an_encoded_table_is_stored_as_the_table_itself(container):
    """encode_table (made in another thread) then write_table stores what write_table of the DataFrame stores."""
    from concurrent.futures import ThreadPoolExecutor

    table = awkward_table()
    visible = [c != "label_id" for c in table.columns]
    with ThreadPoolExecutor(1) as pool:
        encoded = pool.submit(encode_table, table, visible).result()
    with open_file(container, "a") as f:
        write_table(f, "direct", table, visible=visible)
        write_table(f, "encoded", encoded)
        for part in ("cells", "columns", "visible"):
            np.testing.assert_array_equal(
                f[f"{table_key('encoded')}/{part}"][...], f[f"{table_key('direct')}/{part}"][...]
            )
        for attribute in ("dtypes", "n_rows", "string_layout"):
            assert f[table_key("encoded")].attrs[attribute] == f[table_key("direct")].attrs[attribute]
        pd.testing.assert_frame_equal(read_table(f, "encoded"), table)
        assert table_visible(f, "encoded") == visible
        with pytest.raises(ContainerError, match="encoded already"):
            write_table(f, "again", encoded, visible=visible)


def test_empty_and_replaced_tables(container):
    with open_file(container, "a") as f:
        write_table(f, "t", pd.DataFrame({"a": pd.Series([], dtype=np.float64), "b": pd.Series([], dtype=object)}))
        assert read_table(f, "t").shape == (0, 2)
        write_table(f, "t", pd.DataFrame({"x": [1]}))
        assert read_table(f, "t").columns.tolist() == ["x"]


def test_bad_tables_are_refused(container):
    with open_file(container, "a") as f:
        with pytest.raises(ContainerError, match="DataFrame"):
            write_table(f, "t", {"a": [1]})
        with pytest.raises(ContainerError, match="visible"):
            write_table(f, "t", pd.DataFrame({"a": [1]}), visible=[True, False])
        with pytest.raises(ContainerError, match="no table"):
            read_table(f, "missing")


def test_plate_table_file(tmp_path):
    folder = tmp_path / "plate1"
    folder.mkdir()
    path = plate_table_path(str(folder))
    assert path.endswith("plate1_table.hdf5")
    images = pd.DataFrame({"image_name": ["WellC01_PointC01_0000"], "site_name": ["C01-0000"], "n_cells": [12]})
    wells = pd.DataFrame({"well_name": ["C01"], "n_cells": [12], "n_images": [1]})
    with open_file(path, "a") as f:
        write_plate_table(f, "images", images)
        write_plate_table(f, "wells", wells)
        with pytest.raises(ContainerError, match="must start with the columns image_name, site_name"):
            write_plate_table(f, "images", wells)
    with open_file(path, "r") as f:
        assert "tables/images/default/cells" in f and "tables/wells/default/cells" in f
        pd.testing.assert_frame_equal(read_plate_table(f, "images"), images)
        pd.testing.assert_frame_equal(read_plate_table(f, "wells"), wells)
        assert table_visible(f, "images/default") == [False, True, True]  # image_name hidden
