import itertools
import os

import pytest

from batchlib.scan import ledger_name

FOLDERS = ["/data/P1", "/data/P1/", "/data/P1//", "P1", "./P1", "/"]
NAMES = ["a.h5", "sub/a.h5", "../a.h5", ".hidden.h5", "sub/../a.h5", "sub//a.h5", "a/", "P1/a.h5", "/a.h5", "x.y/a"]


@pytest.mark.parametrize("folder", FOLDERS)
def test_ledger_name_is_the_relative_path_inside_the_folder_and_the_path_outside(folder):
    for name, join in itertools.product(NAMES, [os.path.join, lambda f, n: f + "/" + n, lambda f, n: f + n]):
        path = join(folder, name)
        relative = os.path.relpath(path, folder)
        assert ledger_name(path, folder) == (path if relative.startswith("..") else relative), (path, folder)
    if folder != "/":
        assert ledger_name("/elsewhere/a.tiff", folder) == "/elsewhere/a.tiff"
