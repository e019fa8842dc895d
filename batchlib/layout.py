"""JobLayout: where a job reads and writes, as plain data.

A job's layout is everything needed to plan it without the job object:
:mod:`batchlib.planning` plans from it, the ledger keeps a copy, and
``batchlib status`` / ``explain`` plan from that copy.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from .scan import ledger_name

PER_FILE, PLATE = "per_file", "plate"


@dataclass(frozen=True)
class JobLayout:
    """Where a job finds its inputs and puts its outputs.

    It is everything needed to plan a job without the job object, so
    ``batchlib status`` and ``batchlib explain`` can plan from the copy the
    ledger keeps.
    """

    name: str
    kind: str  # PER_FILE or PLATE
    input_folder: str
    input_pattern: str
    output_folder: str
    output_ext: str | None = None
    input_keys: tuple[str, ...] = ()
    output_keys: tuple[str, ...] = ()
    output_name: str | None = None  # plate jobs: the one output file
    params: str = ""
    version: str = ""
    #: Filename scheme grouping several inputs (one file per channel) into one output per site.
    group_by: str | None = None

    @property
    def per_plate(self) -> bool:
        """True for a plate job (many inputs, one output), False for a job with one output per input."""
        return self.kind == PLATE

    def output_file_name(self, input_name: str) -> str:
        """Name of the output made from input ``input_name``.

        Examples
        --------
        >>> JobLayout("J", PER_FILE, "/raw", "*.tif", "/plate", ".h5").output_file_name("a.b.tif")
        'a.b.h5'
        """
        if self.per_plate:
            return self.output_name
        if self.output_ext is None:
            return input_name
        stem, dot, _ = input_name.rpartition(".")
        return (stem if dot else input_name) + self.output_ext

    def output_path(self, input_name: str) -> str:
        """Path of the output made from input ``input_name``."""
        return os.path.join(self.output_folder, self.output_file_name(input_name))

    def to_spec(self, plate_folder: str) -> dict:
        """A JSON-able copy, folders relative to ``plate_folder`` where inside."""
        spec = asdict(self)
        for key in ("input_folder", "output_folder"):
            spec[key] = ledger_name(spec[key], plate_folder)
        spec["input_keys"], spec["output_keys"] = list(self.input_keys), list(self.output_keys)
        return spec

    @classmethod
    def from_spec(cls, spec: dict, plate_folder: str) -> JobLayout:
        """Inverse of :meth:`to_spec`."""
        spec = dict(spec)
        for key in ("input_folder", "output_folder"):
            spec[key] = os.path.normpath(os.path.join(plate_folder, spec[key]))
        spec["input_keys"], spec["output_keys"] = tuple(spec["input_keys"]), tuple(spec["output_keys"])
        return cls(**spec)
