"""Raw image files as the importer sees them before reading pixels.

Their headers (shape, dtype), channel names, sizes, and the plate's
reference (what most of its files share).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from ..errors import InvalidInputError
from ..oserrors import input_error, resource_error

GIB = 1024**3


def raw_channel_names(file_name: str, regex: re.Pattern, n_channels: int) -> list[str]:
    """Channel names of a multi-channel file: from the ``channel`` group, split at commas.

    Examples
    --------
    >>> from batchlib.plate import compile_scheme
    >>> raw_channel_names("WellC01_PointC01_0000_ChannelDAPI,WF_GFP,TRITC_Seq0001.tiff", compile_scheme("batchlib"), 3)
    ['DAPI', 'WF_GFP', 'TRITC']
    >>> raw_channel_names("x.tif", compile_scheme(r"(?P<well>x)(?P<site>)"), 2)
    ['channel0', 'channel1']
    """
    match = regex.search(file_name)
    names = match["channel"].split(",") if match and "channel" in regex.groupindex and match["channel"] else []
    if len(names) != n_channels:
        names = [f"channel{i}" for i in range(n_channels)]
    return names


def tiff_header(path: str, first_page: bool = False) -> tuple[tuple[int, int, int], str]:
    """Shape ``(channels, y, x)`` and dtype of a TIFF's first series, read from its header only.

    With ``first_page``, of the first page only, ``(1, y, x)``: one plane of
    a file whose planes the plate metadata places (OME-TIFF ``TiffData``).
    A file with its channels as samples of each pixel (``y, x, samples``:
    RGB or interleaved channels) reports them first, as :func:`read_tiff`
    returns them. Raises :class:`InvalidInputError` for a file that is not a
    readable TIFF or not a 2D / 3D image (a 2D page).
    """
    import tifffile

    name = os.path.basename(path)
    try:
        with tifffile.TiffFile(path) as tif:
            image = tif.pages[0] if first_page else tif.series[0]
            shape, dtype = tuple(int(n) for n in image.shape), str(image.dtype)
            axes = "" if first_page else image.axes
    except OSError as err:
        if resource_error(err) is not None:
            raise
        raise input_error(err, path) from err
    except Exception as err:
        raise InvalidInputError(f"{name} is not a readable TIFF: {type(err).__name__}: {err}") from err
    if len(shape) == 3 and samples_last(axes):
        shape = (shape[2], shape[0], shape[1])
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or (first_page and shape[0] != 1):
        wanted = "one grey plane per page" if first_page else "a (channels, y, x) or (y, x) image"
        raise InvalidInputError(f"{name}: expected {wanted}, found shape {shape}")
    return shape, dtype


def samples_last(axes: str) -> bool:
    """Whether tifffile's axes of a 3D series put the channels last, as samples of each pixel.

    Examples
    --------
    >>> samples_last("YXS"), samples_last("CYX"), samples_last("QYX")
    (True, False, False)
    """
    return len(axes) == 3 and axes[-1] == "S"


def read_tiff(path: str) -> np.ndarray:
    """The pixels of a TIFF's first series, channels first (as :func:`tiff_header` describes them).

    Errors are tifffile's and the operating system's; the importer turns them into words.
    """
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        image = series.asarray()
        if image.ndim == 3 and samples_last(series.axes):
            image = np.moveaxis(image, -1, 0)
    return image


def list_names(names: Sequence[str], most: int = 6) -> str:
    """Names joined by commas, the middle of a long list left out.

    Examples
    --------
    >>> list_names(["a", "b"]), list_names([f"c{i}" for i in range(100)])
    ('a,b', 'c0,c1,c2,c3,c4,...,c99 (100 in all)')
    """
    if len(names) <= most:
        return ",".join(names)
    return ",".join([*names[: most - 1], "...", names[-1]]) + f" ({len(names)} in all)"


def describe_size(shape: Sequence[int], dtype: str) -> str:
    """Words for an image's shape and size.

    Examples
    --------
    >>> describe_size((3, 100000, 100000), "uint16")
    '3 x 100000 x 100000 uint16 (55.9 GiB)'
    """
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return f"{' x '.join(map(str, shape))} {dtype} ({nbytes / GIB:.1f} GiB)"


def plate_reference(facts: dict[str, dict]) -> tuple | None:
    """The (shape, dtype, channels) most of the plate's images share; ties go to the first name.

    ``facts`` are :meth:`ImportImages.input_facts` by name; images whose
    header could not be read do not count.

    Examples
    --------
    >>> f = {"a": {"shape": [3, 8, 8], "dtype": "uint16", "channels": ["A", "B", "C"]},
    ...      "b": {"shape": [3, 8, 8], "dtype": "uint16", "channels": ["A", "B", "C"]},
    ...      "0_thumb": {"shape": [1, 1, 1], "dtype": "uint8", "channels": ["A"]}}
    >>> plate_reference(f)
    ((3, 8, 8), 'uint16', ('A', 'B', 'C'))
    """
    keys = [reference_key(facts[name]) for name in sorted(facts) if "shape" in facts[name]]
    if not keys:
        return None
    counts = Counter(keys)
    return max(counts, key=lambda key: (counts[key], -keys.index(key)))


def reference_key(facts: dict) -> tuple:
    return tuple(facts["shape"]), facts["dtype"], tuple(sorted(facts.get("channels", ())))
