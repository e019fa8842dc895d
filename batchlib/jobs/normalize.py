"""The normalize step: a plate's profiles centred and scaled against a reference (all wells or controls)."""

from __future__ import annotations

import os
from typing import ClassVar

import pandas as pd

from ..base import PlateJob
from ..errors import ConfigError
from ..normalize import METHODS, normalize_parquet
from ..plate import plate_of
from ..profile_files import profile_paths, write_csv


class NormalizeProfiles(PlateJob):
    """Write ``<plate>_normalized/``: the export's well and single-cell profiles, normalized.

    Reads ``<plate>_profiles/`` (:class:`~batchlib.jobs.export.ExportProfiles`)
    and writes ``<plate>_normalized.parquet`` (wells) and
    ``<plate>_single_cell_normalized.parquet`` (and their CSV with
    ``csv=True``) into ``<plate>_normalized/``, written whole and renamed.
    Each level is normalized against its own reference rows
    (:func:`batchlib.normalize.normalize_profiles`: the same numbers as
    pycytominer's ``normalize``). Reruns when the export changes.

    Parameters
    ----------
    method : str
        ``standardize`` (default, as pycytominer), ``robustize`` or ``mad_robustize``.
    samples : str
        ``"all"`` (default) or a pandas query on the metadata columns selecting
        the reference rows, e.g. ``"Metadata_control_type == 'negcon'"``
        (plate-map columns: ``--platemap``).
    csv : bool
        Also write CSV files.
    """

    parameter_names: ClassVar[tuple[str, ...]] = ("method", "samples", "csv")

    def __init__(self, method: str = "standardize", samples: str = "all", csv: bool = False, identifier=None):
        if method not in METHODS:
            raise ConfigError(f"--normalize-method must be one of {', '.join(METHODS)}; got {method!r}")
        super().__init__(input_pattern="*_profiles", output_name="{plate}_normalized", identifier=identifier)
        self.method, self.samples, self.csv = method, samples, bool(csv)

    def run(self, input_files, output_files, **kwargs):
        out = output_files[0]
        plate = plate_of(out)
        source = os.path.join(os.path.dirname(os.path.abspath(out)), f"{plate}_profiles")
        if source not in [os.path.abspath(p) for p in input_files]:
            raise ConfigError(f"normalize needs the export {source}; run the export step first")
        profiles = profile_paths(source, plate)
        levels = {
            f"{plate}_normalized": profiles["wells_parquet"],
            f"{plate}_single_cell_normalized": profiles["single_parquet"],
        }
        os.makedirs(out)
        for name, path in levels.items():
            target = os.path.join(out, f"{name}.parquet")
            # Streamed: a plate's single cells (1M x 500 features: 4 GB) are never all in memory.
            normalize_parquet(path, target, self.method, self.samples, option="--normalize-samples")
            if self.csv:
                write_csv(pd.read_parquet(target), os.path.join(out, f"{name}.csv"))
