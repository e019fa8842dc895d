"""Measure nuclei, cells and cytoplasm in every image: cell tables in the containers."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from ..base import BatchJobOnContainer
from ..errors import OutputError
from ..io import encode_table, open_file, read_image_later, write_table
from ..io.tables import table_key
from ..measure import measure_objects


class MeasureObjects(BatchJobOnContainer):
    """Per-object features of nuclei, cells and cytoplasm (cell minus nucleus) for every channel.

    Writes three cell tables (plate-viewer layout, first column ``label_id``):
    ``tables/<nuclei_key>/default`` (``Nuclei_*``), ``tables/<cell_key>/default``
    (``Cells_*``) and ``tables/<cell_key>/cytoplasm`` (``Cytoplasm_*``). Without
    a cell segmentation only the nuclei table is written.

    Parameters
    ----------
    channels : dict or list
        Container channel -> name in the feature columns (``{"marker": "GFP"}``),
        or a list of channels named as they are.
    nuclei_key, cell_key : str
        The label images; ``cell_key=None`` measures nuclei only.
    solidity : bool
        Include ``AreaShape_Solidity`` (needs a convex hull per object).
    illumination : str, optional
        The plate's illumination file in the plate folder (``"{plate}_illumination.hdf5"``,
        :class:`~batchlib.jobs.illumination.EstimateIllumination`): each channel with a field
        there is divided by it before it is measured. Its ``field_id`` is a parameter: a
        new field remeasures every image.
    """

    parameter_names: ClassVar[tuple[str, ...]] = ("channels", "nuclei_key", "cell_key", "solidity", "illumination")
    #: Set on the instance only when correcting, so that the parameters of a plain measurement stay as they were.
    illumination: str | None = None

    batch_size = 8  # images measured in threads per call of run

    def __init__(
        self,
        channels: Mapping[str, str] | Sequence[str],
        nuclei_key: str = "nucleus_segmentation",
        cell_key: str | None = "cell_segmentation",
        solidity: bool = True,
        illumination: str | None = None,
        input_pattern: str = "*.h5",
        identifier: str | None = None,
    ):
        channels = dict(channels) if isinstance(channels, Mapping) else {c: c for c in channels}
        segmentations = [nuclei_key] + ([cell_key] if cell_key else [])
        outputs = [table_key(f"{nuclei_key}/default")]
        if cell_key:
            outputs += [table_key(f"{cell_key}/default"), table_key(f"{cell_key}/cytoplasm")]
        super().__init__(
            input_pattern=input_pattern,
            input_key=[*segmentations, *channels],
            output_key=outputs,
            identifier=identifier,
        )
        self.channels = channels
        self.nuclei_key, self.cell_key = nuclei_key, cell_key
        self.solidity = bool(solidity)
        if illumination is not None:
            self.illumination = illumination
        self._field: tuple[str, str | None] | None = None  # (path, field_id), read in the driver at layout

    def layout(self, folder, input_folder=None, run_kwargs=None):
        """Find the plate's illumination field (when correcting), then lay the job out."""
        if self.illumination:
            from .illumination import read_provenance

            path = os.path.join(os.path.abspath(folder), self.illumination.format(plate=os.path.basename(folder)))
            provenance = read_provenance(path)
            self._field = (path, provenance["field_id"] if provenance else None)
        return super().layout(folder, input_folder, run_kwargs)

    def parameters(self) -> dict:
        parameters = super().parameters()
        if self._field is not None:
            parameters["illumination_field"] = self._field[1]
        return parameters

    def _fields(self) -> dict[str, np.ndarray] | None:
        """The plate's illumination field of each channel that has one (read once per process); None: no correction."""
        if self._field is None:
            return None
        from .illumination import field_key, read_fields

        path, field_id = self._field
        if field_id is None:
            raise OutputError(
                f"{self.name}: no illumination field in {path}; run the illumination step (EstimateIllumination) "
                "first, or measure without illumination correction"
            )

        def load() -> dict[str, np.ndarray]:
            with open_file(path, "r") as f:
                present = [key for key in self.channels if field_key(key) in f]
            return read_fields(path, present)

        return self.worker_resource(f"illumination-{field_id}", load)

    def _corrected(self, images: dict[str, np.ndarray], fields: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        """The images divided by the plate's illumination field, channel by channel (as measured)."""
        if fields is None:
            return images
        from ..illumination import apply_flat_field

        names = {name: key for key, name in self.channels.items()}
        return {
            name: apply_flat_field(image, fields[names[name]]) if names[name] in fields else image
            for name, image in images.items()
        }

    def run(self, input_files, output_files, **kwargs):
        # Containers are read and written here; measuring a batch's images and encoding their tables run in threads
        # (compute_in_threads: numpy's sorts and reductions over the pixels release the GIL).
        from ..executors import job_threads
        from ..io.threads import compute_in_threads

        def read(paths: tuple[str, str]) -> tuple:
            # Only the stored bytes are read here; they are decompressed in the computing thread.
            with open_file(paths[0], "r") as f:
                images = {name: read_image_later(f, key) for key, name in self.channels.items()}
                nuclei = read_image_later(f, self.nuclei_key)
                cells = read_image_later(f, self.cell_key) if self.cell_key else None
            return nuclei, cells, images, self._fields()  # the illumination fields are read here too

        def measure(nuclei, cells, images: dict, fields: dict | None) -> dict:
            images = self._corrected({name: image() for name, image in images.items()}, fields)
            tables = self._measure(nuclei(), cells() if cells else None, images)
            return {name: encode_table(table, name=name) for name, table in tables.items()}  # text made here too

        def write(paths: tuple[str, str], tables: dict) -> None:
            with open_file(paths[1], "a") as f:
                for name, table in tables.items():
                    write_table(f, name, table)

        compute_in_threads(zip(input_files, output_files), read, measure, write, job_threads())

    def _measure(self, nuclei: np.ndarray, cells: np.ndarray | None, images: dict) -> dict:
        """The tables of one image: nuclei, and with cells also cells and cytoplasm (cell minus nucleus)."""
        tables = {f"{self.nuclei_key}/default": measure_objects(nuclei, images, "Nuclei", self.solidity)}
        if cells is not None:
            cytoplasm = np.where(nuclei > 0, 0, cells)
            tables[f"{self.cell_key}/default"] = measure_objects(cells, images, "Cells", self.solidity)
            tables[f"{self.cell_key}/cytoplasm"] = measure_objects(cytoplasm, images, "Cytoplasm", self.solidity)
        return tables
