"""The direct write paths (Zarr metadata and chunks, N5 gzip chunks) against the libraries' own readers."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import zarr

from batchlib.io import open_file, write_image
from batchlib.io.backends import _zarr_codec
from batchlib.io.threads import chunk_pool, deferred_writes, run_all

DTYPES = [np.uint8, np.uint16, np.int32, np.int64, np.float32, np.float64, np.bool_]
CODECS = [(None, None), ("blosc", 5), ("gzip", 1), ("zstd", 1), ("blosc", 3)]


def _metadata_files(path):
    names = (".zarray", ".zgroup", ".zattrs", "zarr.json")
    return {n: json.loads(Path(path, n).read_text()) for n in names if Path(path, n).exists()}


@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("codec", CODECS, ids=lambda c: f"{c[0]}-{c[1]}")
def test_zarr_metadata_equals_zarr_python(tmp_path, monkeypatch, fmt, dtype, codec):
    compression, level = codec
    path = str(tmp_path / "a.zarr")
    with open_file(path, "w", zarr_format=fmt) as f:
        with monkeypatch.context() as m:  # ours must not go through zarr-python
            m.setattr(zarr.Group, "create_array", None)
            m.setattr(zarr.Group, "create_group", None)
            ours = f.create_dataset(
                "ours", shape=(70, 130), dtype=dtype, chunks=(32, 64), compression=compression, compression_opts=level
            )
            f.create_group("our_group")
        compressors = None if compression is None else _zarr_codec(fmt, compression, level)
        extra = {"dimension_names": None} if fmt == 3 else {}
        f.native.create_array("theirs", shape=(70, 130), dtype=dtype, chunks=(32, 64), compressors=compressors, **extra)
        f.native.create_group("their_group")
    assert isinstance(ours, zarr.Array) and ours.metadata == zarr.open_array(os.path.join(path, "theirs")).metadata
    assert _metadata_files(os.path.join(path, "ours")) == _metadata_files(os.path.join(path, "theirs"))
    assert _metadata_files(os.path.join(path, "our_group")) == _metadata_files(os.path.join(path, "their_group"))


@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize("compression", [None, "blosc", "gzip", "zstd"])
def test_zarr_chunks_read_by_zarr_python(tmp_path, fmt, compression):
    from batchlib.io import zarrchunks

    data = np.random.default_rng(0).integers(0, 3000, (100, 130)).astype(np.uint16)
    path = str(tmp_path / "a.zarr")
    with open_file(path, "w", zarr_format=fmt) as f:
        f.create_dataset("full", data=data, chunks=(32, 64), compression=compression)  # edge chunks both ways
        part = f.create_dataset("part", shape=data.shape, dtype=data.dtype, chunks=(32, 64), compression=compression)
        assert zarrchunks.write_chunks(part, data[64:, 64:], offset=(64, 64))  # aligned, up to the edge
        assert not zarrchunks.write_chunks(part, data[:10, :10], offset=(5, 0))  # unaligned: zarr's path
        f.backend.write(part, data[:10, :10], offset=(5, 0))
    expected = np.zeros_like(data)
    expected[64:, 64:] = data[64:, 64:]
    expected[5:15, :10] = data[:10, :10]
    np.testing.assert_array_equal(zarr.open_array(os.path.join(path, "full"), mode="r")[...], data)
    np.testing.assert_array_equal(zarr.open_array(os.path.join(path, "part"), mode="r")[...], expected)
    if fmt == 2 and compression != "zstd":  # a second, independent reader (z5py has no zstd for zarr)
        import z5py

        np.testing.assert_array_equal(z5py.File(path, "r")["full"][...], data)


@pytest.mark.parametrize("fmt", [2, 3])
def test_zarr_membership_from_files_equals_zarr(tmp_path, fmt):
    path = str(tmp_path / "a.zarr")
    with open_file(path, "w", zarr_format=fmt) as f:
        f.create_dataset("g/sub/data", data=np.arange(6))
        f.create_group("h")
        for key in ("g", "g/sub", "g/sub/data", "h", "x", "g/x", "g/sub/data/x", "/g/", "h/"):
            assert (key in f) == (key in f.native), key
        del f["h"]
        assert "h" not in f and "h" not in f.native


def test_n5_gzip_chunks_read_by_z5py(tmp_path):
    import z5py

    from batchlib.io import n5chunks

    data = np.random.default_rng(1).integers(0, 3000, (100, 130)).astype(np.uint16)
    path = str(tmp_path / "a.n5")
    with open_file(path, "w") as f:
        part = f.create_dataset("part", shape=data.shape, dtype=data.dtype, chunks=(32, 64), compression="gzip")
        assert n5chunks.write_chunks(part, data[64:, :], offset=(64, 0))
        assert n5chunks.write_chunks(part, data[:32, 64:], offset=(0, 64))
        assert not n5chunks.write_chunks(part, data[:3, :3], offset=(40, 1))  # unaligned: z5py's path
    expected = np.zeros_like(data)
    expected[64:, :] = data[64:, :]
    expected[:32, 64:] = data[:32, 64:]
    np.testing.assert_array_equal(z5py.File(path, "r")["part"][...], expected)
    # The edge chunk (grid y=3, x=2) is stored with its actual size, x first, as N5 requires.
    with open(os.path.join(path, "part", "2", "3"), "rb") as chunk:
        header = np.frombuffer(chunk.read(12), dtype=">u2")
    assert header[:2].tolist() == [0, 2] and header[2:].view(">u4").tolist() == [130 - 128, 100 - 96]


def test_deferred_writes_finish_and_raise_at_the_end(tmp_path):
    done = []
    with deferred_writes():
        with deferred_writes():  # nested: the outer block waits
            run_all(chunk_pool(), done.append, range(50))
        run_all(chunk_pool(), done.append, range(50, 60))
    assert sorted(done) == list(range(60))

    def fail(i):
        if i == 3:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), deferred_writes():
        run_all(chunk_pool(), fail, range(10))
    with pytest.raises(OSError, match="disk full"):
        run_all(chunk_pool(), fail, range(10))


@pytest.mark.parametrize("ext,kwargs", [(".n5", {}), (".zarr", {"zarr_format": 2}), (".zarr", {"zarr_format": 3})])
def test_write_image_same_on_all_backends(tmp_path, ext, kwargs):
    image = np.random.default_rng(2).integers(0, 60000, (1100, 700)).astype(np.uint16)
    with open_file(str(tmp_path / "ref.h5"), "w") as ref, open_file(str(tmp_path / f"a{ext}"), "w", **kwargs) as f:
        for g in (ref, f):
            write_image(g, "raw", image, chunks=(256, 256))
        for level in range(3):
            np.testing.assert_array_equal(f[f"raw/s{level}"][...], ref[f"raw/s{level}"][...])
        assert f["raw"].attrs["ContrastLimits"] == ref["raw"].attrs["ContrastLimits"].tolist()


def test_n5_blosc_chunks_read_by_z5py(tmp_path):
    import z5py

    from batchlib.io import n5chunks

    data = np.random.default_rng(2).integers(0, 3000, (100, 130)).astype(np.uint16)
    path = str(tmp_path / "b.n5")
    with open_file(path, "w") as f:
        part = f.create_dataset("part", shape=data.shape, dtype=data.dtype, chunks=(32, 64), compression="blosc")
        assert n5chunks.write_chunks(part, data)
    with z5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["part"][...], data)
        assert f["part"].compression == "blosc" and f["part"].compression_opts["codec"] == "lz4"
    # z5py's own blosc chunks of the same data decode to the same bytes as ours.
    with z5py.File(str(tmp_path / "ref.n5"), "w") as f:
        ref = f.create_dataset("part", shape=data.shape, chunks=(32, 64), dtype=data.dtype, compression="blosc",
                               codec="lz4", clevel=5, shuffle=1)  # fmt: skip
        ref[...] = data
    from numcodecs import blosc

    for grid in ("0/0", "2/3"):
        ours = Path(path, "part", grid).read_bytes()
        theirs = Path(tmp_path, "ref.n5", "part", grid).read_bytes()
        assert ours[:12] == theirs[:12]  # header: mode, ndim, actual chunk size (edge chunk at 2/3)
        assert blosc.decompress(ours[12:]) == blosc.decompress(theirs[12:])


@pytest.mark.parametrize("fmt", [2, 3])
def test_ome_ngff_arrays_equal_zarr_python(tmp_path, fmt):
    """Nested chunk keys (NGFF 0.4, Zarr 2) and dimension names (NGFF 0.5, Zarr 3), as the OME-Zarr export writes."""
    from numcodecs import Zstd

    from batchlib.io import zarrchunks

    data = np.random.default_rng(3).integers(0, 3000, (3, 100, 130)).astype(np.uint16)
    root = zarr.open_group(str(tmp_path / "p.zarr"), mode="w", zarr_format=fmt)
    layout = {"dimension_separator": "/"} if fmt == 2 else {"dimension_names": ["c", "y", "x"]}
    ours = zarrchunks.create_array(root, "ours", data.shape, data.dtype, (1, 64, 64), "zstd", 3, **layout)
    assert zarrchunks.write_chunks(ours, data)
    if fmt == 2:
        theirs = root.create_array(
            "theirs", data=data, chunks=(1, 64, 64), compressors=Zstd(level=3),
            chunk_key_encoding={"name": "v2", "separator": "/"},
        )  # fmt: skip
    else:
        theirs = root.create_array(
            "theirs", data=data, chunks=(1, 64, 64), compressors=zarr.codecs.ZstdCodec(level=3),
            dimension_names=["c", "y", "x"],
        )  # fmt: skip
    assert zarr.open_array(str(tmp_path / "p.zarr" / "ours")).metadata == theirs.metadata
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "p.zarr" / "ours"))[...], data)
    chunk_files = sorted(
        os.path.relpath(os.path.join(d, n), tmp_path / "p.zarr" / "theirs")
        for d, _, names in os.walk(tmp_path / "p.zarr" / "theirs")
        for n in names
    )
    for rel in chunk_files:  # same files at the same (nested) keys
        assert (tmp_path / "p.zarr" / "ours" / rel).exists(), rel


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_omezarr_nested_groups_are_created_without_zarr_python(tmp_path, monkeypatch, version):
    from batchlib.io.omezarr import _require_group, open_plate

    plate = open_plate(tmp_path / "p.ome.zarr", version)
    _require_group(plate, "A/1")
    with monkeypatch.context() as m:  # new, empty groups are created from the files, not by zarr-python
        m.setattr(zarr.Group, "require_group", None)
        m.setattr(zarr.Group, "create_group", None)
        field = _require_group(plate, "A/1/0/labels/nuclei")
    assert field.path == "A/1/0/labels/nuclei"
    reopened = zarr.open_group(tmp_path / "p.ome.zarr", mode="r")
    assert isinstance(reopened["A/1/0/labels/nuclei"], zarr.Group)
    assert list(reopened["A/1"].group_keys()) == ["0"]
