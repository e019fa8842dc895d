"""Workflow scripts: config files, command-line overrides, exit codes; the demo command."""

import csv
import os
import re
import subprocess
import sys

import pytest

from batchlib.cli import main as cli_main
from batchlib.demo import write_demo_plate
from batchlib.state.lock import FolderLock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "workflows", "custom_job_example.py")


def run_script(*args, cwd=None):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.fixture
def raw_plate(tmp_path):
    raw = tmp_path / "raw"
    write_demo_plate(raw, sites=2, shape=(64, 64), n_nuclei=5)
    return tmp_path, raw


def test_config_file_and_override(raw_plate):
    tmp_path, raw = raw_plate
    conf = tmp_path / "plate.conf"
    conf.write_text(f"folder = {tmp_path / 'from_config'}\ninput-folder = {raw}\ninput-pattern = *C01*.tiff\n")
    result = run_script("-c", str(conf))
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "from_config" / "channel_statistics.csv") as f:
        assert len(list(csv.reader(f))) == 1 + 2  # header + the two C01 sites
    # A command-line option overrides the config file.
    result = run_script("-c", str(conf), "--input-pattern", "*.tiff")
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "from_config" / "channel_statistics.csv") as f:
        assert len(list(csv.reader(f))) == 1 + 4


def test_exit_codes(raw_plate):
    tmp_path, raw = raw_plate
    assert run_script("--input-folder", str(raw)).returncode == 2  # --folder missing
    bad = run_script("--folder", str(tmp_path / "p"), "--input-folder", str(tmp_path / "nope"))
    assert bad.returncode == 2 and "input_folder" in bad.stderr
    (raw / "broken.tiff").write_bytes(b"not a tiff")
    failing = run_script("--folder", str(tmp_path / "p"), "--input-folder", str(raw))
    assert failing.returncode == 1 and "broken.tiff" in failing.stderr
    ignoring = run_script("--folder", str(tmp_path / "p"), "--input-folder", str(raw), "--ignore-invalid-inputs")
    assert ignoring.returncode == 0
    with FolderLock(tmp_path / "p" / "batchlib", "someone"):
        assert run_script("--folder", str(tmp_path / "p"), "--input-folder", str(raw)).returncode == 75


def test_explain_option_runs_nothing(raw_plate):
    tmp_path, raw = raw_plate
    result = run_script("--folder", str(tmp_path / "p"), "--input-folder", str(raw), "--explain")
    assert result.returncode == 0
    assert "ChannelStatistics: 4 would run" in result.stdout and "new" in result.stdout
    assert not (tmp_path / "p" / "channel_statistics.csv").exists()


def test_help_documents_every_option():
    result = run_script("--help")
    assert result.returncode == 0
    for option in (
        "--config",
        "--folder",
        "--input-folder",
        "--n-jobs",
        "--dask-scheduler",
        "--force-recompute",
        "--ignore-invalid-inputs",
        "--ignore-failed-outputs",
        "--wait",
        "--explain",
    ):
        assert option in result.stdout


def test_demo_command(tmp_path, capsys):
    folder = tmp_path / "demo"
    assert cli_main(["demo", "--folder", str(folder), "--sites", "2"]) == 0
    out = capsys.readouterr().out
    results = folder / "DemoPlate"
    assert str(results) in out and "napari" in out
    assert len(os.listdir(folder / "raw")) == 4
    assert len([n for n in os.listdir(results) if n.endswith(".h5")]) == 4
    assert (results / "DemoPlate_table.hdf5").exists() and (results / "DemoPlate.ome.zarr").is_dir()
    # A second demo run finds everything up to date.
    assert cli_main(["demo", "--folder", str(folder), "--sites", "2"]) == 0
    assert cli_main(["status", str(results), "--json"]) == 0
    status = capsys.readouterr().out
    assert '"pending": 0' in status and '"failed": 1' not in status


def test_help_gives_each_default_once():
    from batchlib.cell_analysis import cell_analysis_parser

    text = cell_analysis_parser().format_help().split("options:")[1].split("\n\n")[0]
    # One entry per option; wrapped lines joined.
    entries = {
        entry.split()[0].rstrip(","): " ".join(entry.split()) for entry in re.split(r"\n(?=  -)", text) if entry.strip()
    }
    assert "--prob-thresh" in entries and "--skip" in entries
    for entry in entries.values():
        assert entry.count("(default") <= 1, entry
        assert "(default: None)" not in entry and "(default: False)" not in entry, entry
    assert entries["--prob-thresh"].endswith("StarDist probability threshold (default: the model's)")
    assert entries["--n-jobs"].endswith("(default: 1)")  # a default the help does not state is still appended


def readme_script() -> str:
    """The script of the README's "A workflow in a minute", as printed there."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme[readme.index("## A workflow in a minute") :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("\n```", start)]


def test_the_readme_script_runs_explains_and_exits_as_documented(tmp_path):
    import numpy as np
    import tifffile

    script = tmp_path / "invert.py"
    script.write_text(readme_script())
    raw, plate = tmp_path / "raw_images", tmp_path / "plate_folder"
    raw.mkdir()
    for i in range(3):
        tifffile.imwrite(raw / f"a{i}.tiff", np.full((8, 8), 1000 * i, np.uint16))

    def invert(*args):
        return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120)

    explained = invert("--folder", str(plate), "--input-folder", str(raw), "--explain")
    assert explained.returncode == 0 and "Invert: 3 would run" in explained.stdout, explained.stdout + explained.stderr
    assert not list(plate.glob("*.inverted.tif"))  # --explain runs nothing
    done = invert("--folder", str(plate), "--input-folder", str(raw), "--n-jobs", "2")
    assert done.returncode == 0, done.stderr
    assert tifffile.imread(plate / "a2.inverted.tif")[0, 0] == 65535 - 2000
    assert (plate / "batchlib" / "InvertWorkflow.status").exists()
    bad = invert("--folder", str(plate), "--n-jobs", "0")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    with FolderLock(plate / "batchlib", "someone"):
        assert invert("--folder", str(plate), "--input-folder", str(raw)).returncode == 75


def test_an_unreadable_ledger_is_one_line_and_exit_1(raw_plate):
    tmp_path, raw = raw_plate
    plate = tmp_path / "p"
    assert run_script("--folder", str(plate), "--input-folder", str(raw)).returncode == 0
    (plate / "batchlib" / "ledger.snapshot").write_bytes(b"not a pickle")
    broken = run_script("--folder", str(plate), "--input-folder", str(raw))
    assert broken.returncode == 1 and "Traceback" not in broken.stderr
    assert "ledger.snapshot" in broken.stderr and "Move" in broken.stderr  # names the file and what to do
