"""The demo plate: synthetic raw TIFFs named like a real HTS plate.

``batchlib demo`` writes such a plate and runs a workflow on it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tifffile

from .synthetic import synthetic_site

#: Channel names of the demo's raw files, in file order.
RAW_CHANNELS = ("DAPI", "WF_GFP", "TRITC")
#: Marker level per well: the effect the demo plate shows.
DEFAULT_WELLS = {"C01": 1.0, "C02": 2.5}


def raw_file_name(well: str, site: int, seq: int) -> str:
    """File name in the ``WellC01_PointC01_0000_Channel...`` scheme.

    Examples
    --------
    >>> raw_file_name("C01", 3, 17)
    'WellC01_PointC01_0003_ChannelDAPI,WF_GFP,TRITC_Seq0017.tiff'
    """
    return f"Well{well}_Point{well}_{site:04d}_Channel{','.join(RAW_CHANNELS)}_Seq{seq:04d}.tiff"


def write_demo_plate(
    folder: str | os.PathLike,
    wells: dict[str, float] | Sequence[str] = DEFAULT_WELLS,
    sites: int = 4,
    shape: tuple[int, int] = (512, 512),
    n_nuclei: int = 60,
    seed: int = 0,
    overwrite: bool = False,
) -> list[str]:
    """Write a plate of 3-channel raw TIFFs (nuclei, cells, marker); return the paths.

    Parameters
    ----------
    folder : path-like
        Where the raw files go (created).
    wells : dict or list
        Well names, or a dict well name -> marker level.
    sites : int
        Fields of view per well.
    shape : tuple
        Image shape.
    n_nuclei : int
        Nuclei per image (about).
    seed : int
        Random seed; the same seed writes the same plate.
    overwrite : bool
        Rewrite files that exist; by default they are left alone (raw files
        are never modified), so writing the plate again changes nothing.
    """
    if not isinstance(wells, dict):
        wells = dict.fromkeys(wells, 1.0)
    os.makedirs(folder, exist_ok=True)
    paths = []
    seq = 0
    for w, (well, level) in enumerate(wells.items()):
        for site in range(sites):
            path = os.path.join(folder, raw_file_name(well, site, seq))
            paths.append(path)
            seq += 1
            if os.path.exists(path) and not overwrite:
                continue
            channels, _, _ = synthetic_site(shape, n_nuclei, level, seed=seed * 10_000 + w * 100 + site)
            stack = np.stack([channels["nuclei"], channels["cells"], channels["marker"]])
            tifffile.imwrite(path, stack, photometric="minisblack", metadata={"axes": "CYX"})
    return paths
