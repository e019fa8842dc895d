"""Measure nuclei, cells and cytoplasm in every image: cell tables in the containers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from ..base import BatchJobOnContainer
from ..io import open_file, read_image, write_table
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
    """

    parameter_names: ClassVar[tuple[str, ...]] = ("channels", "nuclei_key", "cell_key", "solidity")

    def __init__(
        self,
        channels: Mapping[str, str] | Sequence[str],
        nuclei_key: str = "nucleus_segmentation",
        cell_key: str | None = "cell_segmentation",
        solidity: bool = True,
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

    def run(self, input_files, output_files, **kwargs):
        for inp, out in zip(input_files, output_files):
            with open_file(inp, "r") as f:
                images = {name: read_image(f, key) for key, name in self.channels.items()}
                nuclei = read_image(f, self.nuclei_key)
                cells = read_image(f, self.cell_key) if self.cell_key else None
            tables = {f"{self.nuclei_key}/default": measure_objects(nuclei, images, "Nuclei", self.solidity)}
            if cells is not None:
                cytoplasm = np.where(nuclei > 0, 0, cells)
                tables[f"{self.cell_key}/default"] = measure_objects(cells, images, "Cells", self.solidity)
                tables[f"{self.cell_key}/cytoplasm"] = measure_objects(cytoplasm, images, "Cytoplasm", self.solidity)
            with open_file(out, "a") as f:
                for name, table in tables.items():
                    write_table(f, name, table)
