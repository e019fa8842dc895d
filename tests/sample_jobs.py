"""Small jobs used by the tests (importable by spawned worker processes)."""

from __future__ import annotations

import os
import time

import numpy as np

from batchlib import BatchJob, BatchJobOnContainer, PlateJob
from batchlib.io import open_file


def read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


class CopyText(BatchJob):
    """Copies a .txt file to .out, appending a suffix.

    A file containing FAIL makes run raise; a file containing INVALID is an
    invalid input. ``delay`` (seconds per file) does not affect the output: it is private.
    """

    parameter_names = ("suffix",)

    def __init__(self, suffix: str = "", delay: float = 0.0, **kwargs):
        kwargs.setdefault("input_pattern", "*.txt")
        kwargs.setdefault("output_ext", ".out")
        super().__init__(**kwargs)
        self.suffix = suffix
        self._delay = delay

    def validate_input(self, path):
        if "INVALID" in read_text(path):
            return f"{os.path.basename(path)} is marked INVALID"
        return super().validate_input(path)

    def run(self, input_files, output_files, **kwargs):
        for inp, out in zip(input_files, output_files):
            text = read_text(inp)
            if "FAIL" in text:
                raise RuntimeError(f"cannot process {os.path.basename(inp)}")
            time.sleep(self._delay)
            with open(out, "w") as f:
                f.write(text + self.suffix + kwargs.get("extra", ""))


class CopyTextV2(CopyText):
    version = "2"


class BatchedCopy(CopyText):
    """CopyText with several files per call of run."""

    batch_size = 4


class ImportText(BatchJobOnContainer):
    """Reads a number from each .txt and writes it as an array under 'raw' in a .h5."""

    def __init__(self, **kwargs):
        super().__init__(input_pattern="*.txt", output_ext=".h5", output_key="raw", **kwargs)

    def run(self, input_files, output_files, **kwargs):
        for inp, out in zip(input_files, output_files):
            value = float(read_text(inp).split()[0])
            with open_file(out, "a") as f:
                if "raw" in f:
                    del f["raw"]
                f.create_dataset("raw", data=np.full((4, 4), value))


class Scale(BatchJobOnContainer):
    """Writes input_key * factor to output_key in the same container."""

    parameter_names = ("factor",)

    def __init__(self, factor: float = 2.0, input_key: str = "raw", output_key: str = "scaled", **kwargs):
        super().__init__(input_key=input_key, output_key=output_key, **kwargs)
        self.factor = factor

    def run(self, input_files, output_files, **kwargs):
        for inp, out in zip(input_files, output_files):
            with open_file(inp, "r") as f:
                data = f[self.input_key][:]
            with open_file(out, "a") as f:
                if self.output_key in f:
                    del f[self.output_key]
                f.create_dataset(self.output_key, data=data * self.factor)


class SumPlate(PlateJob):
    """Sums 'scaled' over all containers into a text file: a plate-level job."""

    def __init__(self, **kwargs):
        super().__init__(input_pattern="*.h5", output_name="plate_sum.txt", input_key="scaled", **kwargs)

    def run(self, input_files, output_files, **kwargs):
        total = 0.0
        for path in input_files:
            with open_file(path, "r") as f:
                total += float(f["scaled"][:].sum())
        with open(output_files[0], "w") as f:
            f.write(f"{len(input_files)} {total}\n")


class CountLoads(BatchJob):
    """Loads a 'model' once per worker and writes the pid per file."""

    def __init__(self, log_folder: str, **kwargs):
        super().__init__(input_pattern="*.txt", output_ext=".pid", **kwargs)
        self._log_folder = log_folder

    def load_model(self):
        path = os.path.join(self._log_folder, f"load-{os.getpid()}-{time.time_ns()}")
        open(path, "w").close()
        return {"pid": os.getpid()}

    def run(self, input_files, output_files, **kwargs):
        model = self.worker_resource("model", self.load_model)
        for out in output_files:
            with open(out, "w") as f:
                f.write(str(model["pid"]))


def write_inputs(folder, n: int, start: int = 0, content=None) -> list[str]:
    """Write ``n`` small .txt inputs named f000.txt, ... and return their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        path = os.path.join(folder, f"f{i:03d}.txt")
        with open(path, "w") as f:
            f.write(content if content is not None else f"{i}")
        paths.append(path)
    return paths


class SyntheticImages(BatchJobOnContainer):
    """Turns each demo-plate TIFF into a container with two channels and a label image."""

    def __init__(self, **kwargs):
        super().__init__(
            input_pattern="*.tiff", output_ext=".h5", output_key=["nuclei", "marker", "nucleus_segmentation"], **kwargs
        )

    def run(self, input_files, output_files, **kwargs):
        import tifffile

        from batchlib.io import write_image

        for inp, out in zip(input_files, output_files):
            stack = tifffile.imread(inp)
            labels = (stack[0] > np.percentile(stack[0], 90)).astype(np.uint32) * (1 + stack[0] % 5)
            with open_file(out, "a") as f:
                write_image(f, "nuclei", stack[0], color="Blue", channel_information="DAPI")
                write_image(f, "marker", stack[2], color="Green")
                write_image(f, "nucleus_segmentation", labels, is_label=True)


class FillsTheDisk(CopyText):
    """CopyText whose third file raises the OS error ``error`` (as writing it on a full disk would); 0: none."""

    def __init__(self, error: int, **kwargs):
        super().__init__(**kwargs)
        self._error = error  # private: setting it to 0 does not rerun the files written

    def run(self, input_files, output_files, **kwargs):
        for inp, out in zip(input_files, output_files):
            if self._error and inp.endswith("f002.txt"):
                raise OSError(self._error, os.strerror(self._error), out)
        super().run(input_files, output_files, **kwargs)
