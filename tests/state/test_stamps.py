"""The stamps' one home: the fast path gives what fingerprint() of stat_stamp()s gives."""

import os

import pytest

from batchlib.state.stamps import fingerprint, split_up_to_date, stat_stamp


def stamp_of(path):
    return stat_stamp(os.stat(path)) if os.path.exists(path) else None


def slow_path(names, fingerprints, params, version, raw, plate, output_name):
    """The definition, one name at a time: recorded fingerprint == fingerprint of the current stamps."""
    up, others = [], []
    for name in names:
        current = fingerprint(
            params, version, [stamp_of(os.path.join(raw, name))], [stamp_of(os.path.join(plate, output_name(name)))]
        )
        (up if fingerprints.get(name) == current else others).append(name)
    return up, others


@pytest.mark.parametrize("output_ext", [".out", None])
def test_fast_path_equals_the_definition(tmp_path, output_ext):
    raw, plate = tmp_path / "raw", tmp_path / "plate"
    raw.mkdir()
    plate.mkdir()

    def output_name(name):
        return name.rpartition(".")[0] + ".out" if output_ext else "out_" + name

    names = [f"f{i}.txt" for i in range(6)]
    for name in names:
        (raw / name).write_text(name)
        (plate / output_name(name)).write_text("x")
    recorded = {
        name: fingerprint("p", "1", [stamp_of(raw / name)], [stamp_of(plate / output_name(name))]) for name in names
    }
    del recorded["f0.txt"]  # never processed
    (raw / "f1.txt").write_text("changed input")  # the input changed
    os.remove(plate / output_name("f2.txt"))  # the output is gone
    (plate / output_name("f3.txt")).write_text("rewritten by hand")  # the output changed
    os.remove(raw / "f4.txt")  # the input is gone
    # f5.txt is up to date
    expected = slow_path(names, recorded, "p", "1", str(raw), str(plate), output_name)
    assert expected == (["f5.txt"], ["f0.txt", "f1.txt", "f2.txt", "f3.txt", "f4.txt"])
    in_stamps, out_stamps = {}, {}
    got = split_up_to_date(
        names, recorded, "p", "1", str(raw), str(plate), output_name, output_ext, in_stamps, out_stamps
    )
    assert got == expected
    assert in_stamps["f5.txt"] == stamp_of(raw / "f5.txt") and in_stamps["f4.txt"] is None  # caches filled
    # Another parameter hash or version: nothing is up to date.
    for params, version in (("q", "1"), ("p", "2")):
        folders = (str(raw), str(plate), output_name, output_ext)
        assert split_up_to_date(names, recorded, params, version, *folders, {}, {})[0] == []


def test_fast_path_uses_the_stamps_it_is_given(tmp_path):
    """Stamps already known (a folder listing) are not taken again: the caller's cache decides."""
    recorded = {"a.txt": fingerprint("p", "1", ["3:1"], ["4:2"])}
    in_stamps, out_stamps = {"a.txt": "3:1"}, {"a.out": "4:2"}  # no such files on disk
    assert split_up_to_date(
        ["a.txt"], recorded, "p", "1", str(tmp_path), str(tmp_path), None, ".out", in_stamps, out_stamps
    ) == (["a.txt"], [])
