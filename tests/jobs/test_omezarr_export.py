"""The OME-Zarr plate export, read back with ome-zarr-py's reader and napari-ome-zarr's."""

import os

import numpy as np
import pytest
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from sample_jobs import SyntheticImages

from batchlib import run_workflow
from batchlib.demo import write_demo_plate
from batchlib.io import open_file, read_image
from batchlib.io.omezarr import FIELD_LAYOUT, SOURCE_ATTR
from batchlib.jobs.omezarr import OmeZarrExport


def export_workflow(folder, raw, version="0.4"):
    jobs = [SyntheticImages(), OmeZarrExport(["nuclei", "marker"], ["nucleus_segmentation"], ngff_version=version)]
    return run_workflow("wf", folder, jobs, input_folder=raw, progress=False)


def read_node(path):
    nodes = list(Reader(parse_url(path))())
    return nodes[0]


@pytest.fixture
def plate(tmp_path):
    raw = tmp_path / "raw"
    write_demo_plate(raw, wells={"C01": 1.0, "D02": 2.0}, sites=2, shape=(300, 300), n_nuclei=8)
    return str(tmp_path / "P1"), str(raw)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_plate_reads_back_with_ome_zarr(plate, version):
    folder, raw = plate
    results = export_workflow(folder, raw, version)
    assert results["OmeZarrExport"].processed == 1
    path = os.path.join(folder, "P1.ome.zarr")
    root = zarr.open_group(path, mode="r")
    assert root.metadata.zarr_format == (2 if version == "0.4" else 3)
    attrs = root.attrs.asdict()
    plate_meta = attrs["plate"] if version == "0.4" else attrs["ome"]["plate"]
    if version == "0.5":
        assert attrs["ome"]["version"] == "0.5"
    assert [r["name"] for r in plate_meta["rows"]] == list("ABCDEFGH")  # every row of a 96-well plate
    assert [c["name"] for c in plate_meta["columns"]] == [str(i) for i in range(1, 13)]
    assert plate_meta["wells"] == [
        {"path": "C/1", "rowIndex": 2, "columnIndex": 0},
        {"path": "D/2", "rowIndex": 3, "columnIndex": 1},
    ]
    assert plate_meta["field_count"] == 2
    assert "A" not in root and "C" in root  # row groups only where wells have images

    node = read_node(path)
    assert "Plate" in [type(s).__name__ for s in node.specs]
    well = read_node(os.path.join(path, "C", "1"))
    assert "Well" in [type(s).__name__ for s in well.specs]

    image_path = os.path.join(path, "D", "2", "1")
    image_nodes = list(Reader(parse_url(image_path))())
    image = image_nodes[0]
    assert [type(s).__name__ for s in image.specs] == ["Multiscales", "OMERO"]  # no "Labels": that is its subgroup
    assert [tuple(level.shape) for level in image.data] == [(2, 300, 300), (2, 150, 150)]
    channels = image.metadata["channel_names"]
    assert channels == ["nuclei", "marker"]
    container = os.path.join(folder, "WellD02_PointD02_0001_ChannelDAPI,WF_GFP,TRITC_Seq0003.h5")
    with open_file(container, "r") as f:
        np.testing.assert_array_equal(np.asarray(image.data[0][0]), read_image(f, "nuclei"))
        np.testing.assert_array_equal(np.asarray(image.data[1][1]), read_image(f, "marker", 1))
        labels_expected = read_image(f, "nucleus_segmentation")
    label_nodes = [n for n in image_nodes if "Label" in [type(s).__name__ for s in n.specs]]
    assert len(label_nodes) == 1
    label = label_nodes[0]
    np.testing.assert_array_equal(np.asarray(label.data[0]), labels_expected)
    assert [tuple(level.shape) for level in label.data] == [(300, 300), (150, 150)]


def napari_layers(path: str) -> list[tuple]:
    """The layers napari makes of ``path``: napari-ome-zarr's reader, as ``napari --plugin napari-ome-zarr`` runs it."""
    napari_ome_zarr = pytest.importorskip("napari_ome_zarr", reason="napari-ome-zarr (the test extra) is not installed")
    reader = napari_ome_zarr.napari_get_reader(path)
    assert reader is not None, f"napari-ome-zarr does not read {path}"
    return reader(path)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_field_and_plate_open_in_napari(plate, version):
    """A field opens as its image (one layer per channel) and its label images; the plate as all of them tiled."""
    folder, raw = plate
    export_workflow(folder, raw, version)
    path = os.path.join(folder, "P1.ome.zarr")
    field_1 = os.path.join(folder, "WellD02_PointD02_0001_ChannelDAPI,WF_GFP,TRITC_Seq0003.h5")
    field_0 = os.path.join(folder, "WellD02_PointD02_0000_ChannelDAPI,WF_GFP,TRITC_Seq0002.h5")
    with open_file(field_1, "r") as f:
        nuclei, marker = read_image(f, "nuclei"), read_image(f, "marker", 1)
        segmentation = read_image(f, "nucleus_segmentation")

    layers = napari_layers(os.path.join(path, "D", "2", "1"))
    assert [kind for _, _, kind in layers] == ["image", "labels"]
    (image, meta, _), (labels, labels_meta, _) = layers
    assert meta["channel_axis"] == 0 and meta["name"] == ["image: nuclei", "image: marker"]
    assert [tuple(level.shape) for level in image] == [(2, 300, 300), (2, 150, 150)]
    np.testing.assert_array_equal(np.asarray(image[0][0]), nuclei)
    np.testing.assert_array_equal(np.asarray(image[1][1]), marker)
    assert labels_meta["name"].endswith("/nucleus_segmentation")
    assert [tuple(level.shape) for level in labels] == [(300, 300), (150, 150)]
    np.testing.assert_array_equal(np.asarray(labels[0]), segmentation)

    # The plate: every well of the 96-well plate as a tile of its first field (D/2/0 at row 3, column 1).
    layers = napari_layers(path)
    assert [kind for _, _, kind in layers] == ["image", "labels"]
    (image, meta, _), (labels, _, _) = layers
    assert meta["channel_axis"] == 0 and meta["name"] == ["image: nuclei", "image: marker"]
    assert tuple(image[0].shape) == (2, 8 * 300, 12 * 300) and tuple(labels[0].shape) == (8 * 300, 12 * 300)
    with open_file(field_0, "r") as f:
        np.testing.assert_array_equal(np.asarray(image[0][0, 900:1200, 300:600]), read_image(f, "nuclei"))
        np.testing.assert_array_equal(np.asarray(labels[0][900:1200, 300:600]), read_image(f, "nucleus_segmentation"))


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_rerun_rewrites_fields_of_an_older_layout(plate, version, monkeypatch):
    """A field written by layout 1 (job version 1) is rewritten by the next run and then opens with its image."""
    folder, raw = plate
    with monkeypatch.context() as m:
        m.setattr(OmeZarrExport, "version", "1")
        export_workflow(folder, raw, version)
    path = os.path.join(folder, "P1.ome.zarr")
    # D/2/1 as layout 1 left it: its label names on the image group too, a stamp without the layout.
    field_path = os.path.join(path, "D", "2", "1")
    field = zarr.open_group(field_path, mode="a")
    stamp = field.attrs[SOURCE_ATTR]
    old_list = ["labels/nucleus_segmentation"]
    if version == "0.4":
        field.attrs["labels"] = old_list
    else:
        field.attrs["ome"] = {**field.attrs["ome"], "labels": old_list}
    field.attrs[SOURCE_ATTR] = stamp.removeprefix(f"layout={FIELD_LAYOUT}|")
    assert field.attrs[SOURCE_ATTR] != stamp
    assert [kind for _, _, kind in napari_layers(field_path)] == ["labels"]  # what napari showed of such a field
    current = os.path.join(path, "C", "1", "0", "0", ".zarray" if version == "0.4" else "zarr.json")
    before = os.stat(current).st_mtime_ns

    assert export_workflow(folder, raw, version)["OmeZarrExport"].processed == 1
    attrs = zarr.open_group(field_path, mode="r").attrs.asdict()
    assert "labels" not in (attrs if version == "0.4" else attrs["ome"])
    assert attrs[SOURCE_ATTR] == stamp
    assert [kind for _, _, kind in napari_layers(field_path)] == ["image", "labels"]
    assert os.stat(current).st_mtime_ns == before  # fields of the current layout are kept


def test_export_is_incremental(plate, tmp_path):
    folder, raw = plate
    export_workflow(folder, raw)
    path = os.path.join(folder, "P1.ome.zarr")
    old_field = os.path.join(path, "C", "1", "0", "0", ".zarray")
    before = os.stat(old_field).st_mtime_ns
    # A new image arrives: only its field is written.
    write_demo_plate(raw, wells={"E05": 1.0}, sites=1, shape=(300, 300), n_nuclei=8)
    results = export_workflow(folder, raw)
    assert results["SyntheticImages"].processed == 1 and results["OmeZarrExport"].processed == 1
    assert os.stat(old_field).st_mtime_ns == before
    root = zarr.open_group(path, mode="r")
    assert [w["path"] for w in root.attrs["plate"]["wells"]] == ["C/1", "D/2", "E/5"]
    assert "0" in root["E/5"]
    # Nothing new: nothing runs.
    assert export_workflow(folder, raw)["OmeZarrExport"].processed == 0
    # An image leaves the plate: its field and then-empty well go.
    os.remove(os.path.join(folder, "WellE05_PointE05_0000_ChannelDAPI,WF_GFP,TRITC_Seq0000.h5"))
    os.remove(os.path.join(raw, "WellE05_PointE05_0000_ChannelDAPI,WF_GFP,TRITC_Seq0000.tiff"))
    assert export_workflow(folder, raw)["OmeZarrExport"].processed == 1
    root = zarr.open_group(path, mode="r")
    assert [w["path"] for w in root.attrs["plate"]["wells"]] == ["C/1", "D/2"] and "E" not in root


def test_unparsable_container_name_is_invalid(plate):
    folder, raw = plate
    export_workflow(folder, raw)
    with open_file(os.path.join(folder, "stray.h5"), "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    results = run_workflow("wf", folder, [OmeZarrExport(["nuclei"])], ignore_invalid_inputs=True, progress=False)
    assert "stray.h5" in results["OmeZarrExport"].invalid_files


def zarr_files(root) -> dict[str, bytes]:
    """Every file of a Zarr tree by relative path (metadata as parsed JSON, chunks as bytes)."""
    import json

    files = {}
    for d, _, names in os.walk(root):
        for name in names:
            rel = os.path.relpath(os.path.join(d, name), root)
            with open(os.path.join(d, name), "rb") as f:
                data = f.read()
            if name.startswith(".z") or name == "zarr.json":
                data = json.loads(data)
                data.pop(SOURCE_ATTR, None)  # stamps of the source files: differ between two exports
            files[rel] = data
    return files


def test_fields_written_by_worker_processes_equal_serial(plate, tmp_path):
    """With n_jobs=2 the plate job lends its fields to the process pool: same plate, byte for byte."""
    folder, raw = plate
    jobs = [SyntheticImages(), OmeZarrExport(["nuclei", "marker"], ["nucleus_segmentation"])]
    serial = run_workflow("wf", folder, jobs, input_folder=raw, progress=False)
    parallel_folder = str(tmp_path / "parallel" / "P1")
    parallel = run_workflow("wf", parallel_folder, jobs, input_folder=raw, n_jobs=2, progress=False)
    assert serial["OmeZarrExport"].processed == parallel["OmeZarrExport"].processed == 1
    ours = zarr_files(os.path.join(parallel_folder, "P1.ome.zarr"))
    assert ours == zarr_files(os.path.join(folder, "P1.ome.zarr"))
    assert sum(1 for rel in ours if rel.endswith(".zarray")) >= 4 * 2  # 4 fields x (image, label) x levels
