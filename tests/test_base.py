"""The job model (base.py): names, parameters, layouts and their checks, kinds."""

import os

import pytest

from batchlib import BatchJob, BatchJobOnContainer, PlateJob
from batchlib.errors import ConfigError


class Blur(BatchJob):
    parameter_names = ("sigma",)

    def __init__(self, sigma=1.0, **kwargs):
        super().__init__(input_pattern="*.tif", output_ext=".blur.tif", **kwargs)
        self.sigma = sigma
        self._cache = {}  # private: never a parameter


def test_name_and_identifier():
    assert Blur().name == "Blur" and Blur(identifier="dapi").name == "Blur_dapi"


def test_public_attributes_are_parameters_layout_and_private_ones_are_not():
    job = Blur(sigma=2.0, identifier="x", input_folder="/raw")
    assert job.parameters() == {"sigma": 2.0, "output_ext": ".blur.tif"}
    # The hash follows the parameters and run's keyword arguments, not the layout or private state.
    assert Blur(sigma=2.0).params_hash() == job.params_hash()
    assert Blur(sigma=3.0).params_hash() != job.params_hash()
    assert job.params_hash({"extra": 1}) != job.params_hash()
    job._cache["big"] = object()
    assert job.params_hash() == Blur(sigma=2.0).params_hash()


def test_an_undeclared_public_attribute_is_refused_with_what_to_do():
    class Sharpen(Blur):
        def __init__(self, amount=1.0):
            super().__init__()
            self.amount = amount  # not in parameter_names

    with pytest.raises(ConfigError, match=r"Sharpen\.amount: .*parameter_names.*'_amount'"):
        Sharpen()
    job = Blur()
    with pytest.raises(ConfigError, match="Blur.kernel"):
        job.kernel = [1, 2, 1]  # a derived value set later is caught too
    assert "kernel" not in vars(job) and job.parameters() == Blur().parameters()


def test_parameters_are_those_declared_by_the_class_and_its_bases():
    class Sharpen(Blur):
        parameter_names = ("amount",)

        def __init__(self, amount=1.0):
            super().__init__()
            self.amount = amount

    assert Sharpen.declared_parameters() == {"output_ext", "sigma", "amount"}
    assert Sharpen(2.0).parameters() == {"output_ext": ".blur.tif", "sigma": 1.0, "amount": 2.0}
    assert BatchJobOnContainer.declared_parameters() == {"output_ext", "input_keys", "output_keys"}


def test_layout_resolves_folders_and_names(tmp_path):
    plate = str(tmp_path / "P1")
    layout = Blur().layout(plate, input_folder=str(tmp_path / "raw"))
    assert (layout.input_folder, layout.output_folder) == (str(tmp_path / "raw"), plate)
    assert layout.output_path("a.tif") == os.path.join(plate, "a.blur.tif") and not layout.per_plate
    own = Blur(input_folder=str(tmp_path / "mine")).layout(plate, input_folder=str(tmp_path / "raw"))
    assert own.input_folder == str(tmp_path / "mine")  # the job's own folder wins over the workflow's
    table = PlateJob("*.h5", "{plate}_table.hdf5").layout(plate)
    assert table.per_plate and table.output_file_name("x.h5") == "P1_table.hdf5"


def test_layouts_that_would_overwrite_inputs_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="output_ext must start with '.'"):
        Blur.__mro__[1](output_ext="tif")
    with pytest.raises(ConfigError, match="overwrite its inputs"):
        BatchJob("*.tif").layout(str(tmp_path))
    with pytest.raises(ConfigError, match="at least one output_key"):
        BatchJobOnContainer("*.h5", input_key="raw").layout(str(tmp_path))
    with pytest.raises(ConfigError, match="output_name must be a file name"):
        PlateJob("*.h5", "sub/table.h5").layout(str(tmp_path))


def test_kinds():
    assert not Blur().per_plate and PlateJob("*.h5", "t.h5").per_plate
