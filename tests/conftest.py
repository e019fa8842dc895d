import os
import sys

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)


@pytest.fixture
def plate(tmp_path):
    """An empty plate folder and a separate raw folder."""
    raw = tmp_path / "raw"
    folder = tmp_path / "plate"
    raw.mkdir()
    return str(folder), str(raw)


@pytest.fixture(autouse=True)
def _quiet_progress(monkeypatch):
    # Keep test output readable; progress bars are exercised in the CLI tests.
    monkeypatch.setenv("LOGLEVEL", os.environ.get("LOGLEVEL", "WARNING"))
