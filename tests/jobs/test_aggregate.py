import numpy as np
import pandas as pd
import pytest

from batchlib.jobs.aggregate import join_on_labels


def table(prefix: str, labels, rng) -> pd.DataFrame:
    return pd.DataFrame({"label_id": np.asarray(labels, dtype=np.int64), f"{prefix}_A": rng.random(len(labels))})


CASES = {
    "same labels": ([1, 2, 3], [1, 2, 3], [1, 2, 3]),
    "another order": ([1, 2, 3], [3, 1, 2], [1, 2, 3]),
    "a nucleus without a cell row": ([1, 2, 3], [1, 3], [1, 2, 3]),
    "labels not increasing": ([3, 1, 2], [3, 1, 2], [3, 1, 2]),
    "no cells": ([], [], []),
}


@pytest.mark.parametrize("case", list(CASES))
def test_join_on_labels_equals_a_chain_of_left_merges(case):
    rng = np.random.default_rng(1)
    tables = [table(prefix, labels, rng) for prefix, labels in zip(("Cells", "Nuclei", "Cytoplasm"), CASES[case])]
    want = tables[0]
    for other in tables[1:]:
        want = want.merge(other, on="label_id", how="left")
    pd.testing.assert_frame_equal(join_on_labels(tables), want)


def test_join_on_labels_with_a_shared_column_name_merges():
    rng = np.random.default_rng(2)
    tables = [table("Cells", [1, 2], rng), table("Cells", [1, 2], rng)]
    want = tables[0].merge(tables[1], on="label_id", how="left")
    pd.testing.assert_frame_equal(join_on_labels(tables), want)
    assert list(want.columns) == ["label_id", "Cells_A_x", "Cells_A_y"]
