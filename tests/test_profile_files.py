import sqlite3

import numpy as np
import pandas as pd
import pytest

from batchlib import profile_files
from batchlib.profile_files import append_sqlite, write_sqlite


def profiles(images: range, rng) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Single-cell rows (3 cells per image) and Image rows of ``images`` (ImageNumber = the image)."""
    numbers = np.repeat(list(images), 3)
    cells = pd.DataFrame(
        {
            "Metadata_Plate": "P1",
            "Metadata_Well": "A01",
            "Metadata_Site": 0,
            "Metadata_ImageNumber": numbers,
            "Metadata_ObjectNumber": np.tile([1, 2, 3], len(images)),
            "Nuclei_AreaShape_Area": rng.random(len(numbers)),
            "Cells_AreaShape_Area": rng.random(len(numbers)),
        }
    )
    image_rows = pd.DataFrame({"ImageNumber": list(images), "Metadata_Plate": "P1", "Metadata_Well": "A01"})
    return cells, image_rows


def row_counts(path) -> dict[str, int]:
    with sqlite3.connect(path) as connection:
        return {t: connection.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("Image", "Nuclei", "Cells")}


def test_append_sqlite_adds_every_table_in_one_transaction(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    path = tmp_path / "P1.sqlite"
    write_sqlite(str(path), *profiles(range(1, 3), rng), "P1")
    assert row_counts(path) == {"Image": 2, "Nuclei": 6, "Cells": 6}

    real_tables = profile_files.sqlite_tables

    def broken_after_the_image_table(single_cells, images, plate):
        tables = real_tables(single_cells, images, plate)
        tables["Nuclei"] = tables["Nuclei"].assign(**{"no such column": 1})  # fails after Image was inserted
        return tables

    monkeypatch.setattr(profile_files, "sqlite_tables", broken_after_the_image_table)
    with pytest.raises((sqlite3.OperationalError, pd.errors.DatabaseError)):
        append_sqlite(str(path), *profiles(range(3, 5), rng), "P1")
    assert row_counts(path) == {"Image": 2, "Nuclei": 6, "Cells": 6}  # the Image rows were rolled back too

    monkeypatch.setattr(profile_files, "sqlite_tables", real_tables)
    append_sqlite(str(path), *profiles(range(3, 5), rng), "P1")
    assert row_counts(path) == {"Image": 4, "Nuclei": 12, "Cells": 12}
