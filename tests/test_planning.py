"""planning.decide, the pure rerun rule, and the layout's names: each rule and their order."""

import pytest

from batchlib.layout import PER_FILE, PLATE, JobLayout
from batchlib.planning import RUN, SKIP, STILL_INVALID, decide, describe_input_change
from batchlib.state.ledger import Record

STAMPS = {"a.tif": "3:10"}
DONE_RECORD = Record("done", "p", "1", dict(STAMPS), {}, None, 0.1, "h", 0.0)


def never_called():
    raise AssertionError("output_problem must only be asked when all else is up to date")


@pytest.mark.parametrize(
    "record, params, version, stamps, force, expected",
    [
        (DONE_RECORD, "p", "1", STAMPS, True, (RUN, "forced (force_recompute)")),
        (None, "p", "1", STAMPS, False, (RUN, "new")),
        # the version is checked before the parameters, the parameters before the inputs
        (DONE_RECORD, "q", "2", {"a.tif": "9:9"}, False, (RUN, "version changed (1 -> 2)")),
        (DONE_RECORD, "q", "1", {"a.tif": "9:9"}, False, (RUN, "parameters changed")),
        (DONE_RECORD, "p", "1", {"a.tif": "9:9"}, False, (RUN, "input changed: a.tif")),
        (DONE_RECORD._replace(state="failed", error="boom"), "p", "1", STAMPS, False, (RUN, "failed before: boom")),
        (DONE_RECORD._replace(state="invalid", error="bad"), "p", "1", STAMPS, False, (STILL_INVALID, "invalid: bad")),
        (
            DONE_RECORD._replace(state="invalid", error="denied", recheck=True),
            "p",
            "1",
            STAMPS,
            False,
            (RUN, "checking again: denied"),
        ),
    ],
)
def test_each_rule_in_its_order(record, params, version, stamps, force, expected):
    assert decide(record, params, version, stamps, force, never_called) == expected


def test_a_changed_invalid_file_runs_again():
    invalid = DONE_RECORD._replace(state="invalid", error="not a TIFF")
    assert decide(invalid, "p", "1", {"a.tif": "4:11"}, output_problem=never_called)[0] == RUN


def test_outputs_are_looked_at_last():
    assert decide(DONE_RECORD, "p", "1", STAMPS, output_problem=lambda: "output missing: a.h5") == (
        RUN,
        "output missing: a.h5",
    )
    assert decide(DONE_RECORD, "p", "1", STAMPS, output_problem=lambda: None) == (SKIP, "up to date")


def test_input_changes_are_described_and_capped():
    old = {f"f{i}": "1" for i in range(6)}
    new = {**{f"f{i}": "2" for i in range(5)}, "g": "1"}
    assert describe_input_change(old, new) == (
        "input changed: f0, f1, f2 and 2 more; inputs added: g; inputs removed: f5"
    )
    assert describe_input_change({}, {}) == "inputs changed"


def test_output_names():
    per_file = JobLayout("J", PER_FILE, "/raw", "*.tif", "/plate", ".h5")
    assert per_file.output_file_name("a.b.tif") == "a.b.h5" and not per_file.per_plate
    assert JobLayout("J", PER_FILE, "/raw", "*", "/plate", ".h5").output_file_name("noext") == "noext.h5"
    assert JobLayout("J", PER_FILE, "/raw", "*.h5", "/plate").output_file_name("a.h5") == "a.h5"  # same container
    plate = JobLayout("J", PLATE, "/raw", "*.h5", "/plate", output_name="P_table.hdf5")
    assert plate.per_plate and plate.output_file_name("anything.h5") == "P_table.hdf5"
