"""Multiscale images in the plate-viewer layout.

One group per channel, levels ``s0, s1, ...``, and the group attributes the
Fiji plate viewer reads::

    /<name>            Color, Visible, Skip, Alpha, ScaleFactors, ContrastLimits, ChannelInformation
      /s0              full resolution (y, x)
      /s1              downscaled by ScaleFactors[1]
      ...

Intensity levels are block means (cast back to the dtype), label levels take
every n-th pixel, so label ids survive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._version import __version__
from ..errors import ContainerError
from .threads import deferred_writes

COLORS = ("Gray", "Red", "Green", "Blue", "White", "Glasbey")
#: dtypes the plate viewer reads.
VIEWER_DTYPES = (np.uint8, np.uint16, np.uint32, np.float32)
#: Root attribute holding the version of batchlib that wrote the container.
VERSION_ATTR = "batchlib_version"
#: Root attribute of a container: the size of its pixels in micrometres, where known (from the plate metadata).
PIXEL_SIZE_ATTR = "pixel_size_um"


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Downscale ``image`` by ``factor`` with the mean of each block, in its dtype.

    Integer means are rounded half to even (as ``np.rint``). Edge blocks that
    stick out of the image average only the pixels inside.

    Examples
    --------
    >>> block_mean(np.array([[0, 2, 4], [2, 4, 6]], dtype=np.uint8), 2)
    array([[2, 5]], dtype=uint8)
    """
    if factor == 1:
        return image.copy()
    h, w = image.shape
    if factor == 2 and image.dtype in (np.uint8, np.uint16) and h % 2 == 0 and w % 2 == 0:
        return _half_mean_uint(image)
    hc, wc = h // factor * factor, w // factor * factor
    # Sums in float64 are exact for every integer dtype up to 32 bits.
    acc = np.float64 if image.dtype.itemsize > 2 or image.dtype.kind == "f" else np.float32
    inner = image[:hc, :wc].reshape(hc // factor, factor, wc // factor, factor)
    out = np.empty((-(-h // factor), -(-w // factor)), dtype=acc)
    out[: hc // factor, : wc // factor] = inner.sum(axis=(1, 3), dtype=acc) / (factor * factor)
    if hc < h or wc < w:  # partial blocks at the lower and right edges
        for y in range(0, out.shape[0]):
            for x in ([out.shape[1] - 1] if wc < w else []) + (list(range(out.shape[1])) if y * factor >= hc else []):
                block = image[y * factor : (y + 1) * factor, x * factor : (x + 1) * factor]
                out[y, x] = block.mean(dtype=np.float64)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(image.dtype)


def _half_mean_uint(image: np.ndarray) -> np.ndarray:
    # 2x2 means in integer arithmetic, rounded half to even like np.rint: the
    # common case (every pyramid level of a 16-bit image), several times faster.
    total = image[0::2, 0::2].astype(np.uint32)
    total += image[1::2, 0::2]
    total += image[0::2, 1::2]
    total += image[1::2, 1::2]
    quotient, remainder = total >> 2, total & 3
    quotient += (remainder > 2) | ((remainder == 2) & (quotient & 1).astype(bool))
    return quotient.astype(image.dtype)


def contrast_limits(image: np.ndarray, low: float = 1, high: float = 99) -> list[float]:
    """The ``low``-th and ``high``-th percentile of ``image``, exactly as ``np.percentile``.

    For 8- and 16-bit images they come from a histogram (no sort), which is
    what makes writing a 2048 x 2048 image fast. NaN and infinite pixels are
    left out (``[0, 0]`` if no pixel is finite).

    Examples
    --------
    >>> img = np.arange(1000, dtype=np.uint16).reshape(10, 100)
    >>> contrast_limits(img) == list(np.percentile(img, [1, 99]))
    True
    >>> contrast_limits(np.array([1.0, 2.0, np.nan, np.inf, 3.0]), 0, 100)
    [1.0, 3.0]
    """
    if image.dtype.kind == "f":
        image = finite_pixels(image)
    if image.size == 0:
        return [0.0, 0.0]
    if image.dtype not in (np.uint8, np.uint16):
        return [float(v) for v in np.percentile(image, [low, high])]
    cumulative = np.cumsum(np.bincount(image.ravel()))
    limits = []
    for q in (low, high):
        position = q / 100 * (image.size - 1)  # numpy's default "linear" method
        below = int(np.floor(position))
        lo = int(np.searchsorted(cumulative, below, side="right"))
        hi = int(np.searchsorted(cumulative, min(below + 1, image.size - 1), side="right"))
        limits.append(float(lo + (position - below) * (hi - lo)))
    return limits


def finite_pixels(image: np.ndarray) -> np.ndarray:
    """The finite pixels of ``image`` (flat), or ``image`` itself if all are finite (no copy).

    Examples
    --------
    >>> finite_pixels(np.array([[1.0, np.nan], [np.inf, 2.0]]))
    array([1., 2.])
    """
    if image.dtype.kind != "f":
        return image
    finite = np.isfinite(image)
    return image if finite.all() else image[finite]


def nearest_downscale(labels: np.ndarray, factor: int) -> np.ndarray:
    """Downscale a label image by taking every ``factor``-th pixel (ids survive).

    Examples
    --------
    >>> nearest_downscale(np.arange(16).reshape(4, 4), 2)
    array([[ 0,  2],
           [ 8, 10]])
    """
    return labels[::factor, ::factor].copy()


def default_scale_factors(shape: Sequence[int], coarsest: int = 256) -> list[int]:
    """Powers of two until the larger side is at most ``coarsest`` pixels.

    Examples
    --------
    >>> default_scale_factors((2048, 2048))
    [1, 2, 4, 8]
    >>> default_scale_factors((100, 120))
    [1]
    """
    factors = [1]
    while max(shape) / factors[-1] > coarsest:
        factors.append(factors[-1] * 2)
    return factors


def _as_label_dtype(image: np.ndarray) -> np.ndarray:
    if image.dtype in (np.uint8, np.uint16, np.uint32):
        return image
    if not np.issubdtype(image.dtype, np.integer) and image.dtype != bool:
        raise ContainerError(f"a label image must have an integer dtype, got {image.dtype}")
    if image.size and (image.min() < 0 or image.max() > np.iinfo(np.uint32).max):
        raise ContainerError("label ids must be in 0 .. 2**32-1 to be stored as uint32 (the viewer reads no uint64)")
    return image.astype(np.uint32)


def write_image(
    f,
    name: str,
    image: np.ndarray,
    scale_factors: Sequence[int] | None = None,
    is_label: bool = False,
    color: str | None = None,
    visible: bool = True,
    skip: bool = False,
    alpha: float = 1.0,
    limits: Sequence[float] | None = None,
    channel_information: str | None = None,
    chunks: tuple[int, int] | None = None,
    compression: str | None = "default",
) -> None:
    """Write a 2D image as a multiscale group with the plate-viewer attributes.

    Parameters
    ----------
    f : Group
        An open container (:func:`batchlib.io.open_file`).
    name : str
        Group name (e.g. ``"nuclei"``, ``"nucleus_segmentation"``); an
        existing group of that name is replaced.
    image : ndarray
        2D image (y, x). Label images are stored as uint32 or smaller.
    scale_factors : list of int, optional
        Absolute factors of the levels, starting with 1; default: powers of 2
        down to about 256 px.
    is_label : bool
        A label image: nearest downscaling, colour ``Glasbey``, no contrast.
    color : str, optional
        One of ``Gray, Red, Green, Blue, White, Glasbey``; default ``White``
        (``Glasbey`` for labels).
    visible, skip, alpha
        Viewer attributes ``Visible``, ``Skip``, ``Alpha``.
    limits : (float, float), optional
        ``ContrastLimits``; default: 1st and 99th percentile of the image
        (not for labels).
    channel_information : str, optional
        The raw channel name (``ChannelInformation``).
    chunks, compression
        Storage options, see :meth:`batchlib.io.containers.Group.create_dataset`.

    Examples
    --------
    >>> import tempfile, os
    >>> from batchlib.io import open_file
    >>> path = os.path.join(tempfile.mkdtemp(), "a.h5")
    >>> with open_file(path, "w") as f:
    ...     write_image(f, "raw", np.arange(1024 * 600, dtype=np.uint16).reshape(1024, 600))
    >>> f = open_file(path, "r")
    >>> [f[f"raw/s{i}"].shape for i in range(3)], f["raw"].attrs["ScaleFactors"].tolist()
    ([(1024, 600), (512, 300), (256, 150)], [1, 2, 4])
    >>> f.close()
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ContainerError(f"write_image({name!r}) expects a 2D (y, x) image, got shape {image.shape}")
    if is_label:
        image = _as_label_dtype(image)
    elif image.dtype == np.float64:
        image = image.astype(np.float32)
    color = color or ("Glasbey" if is_label else "White")
    if color not in COLORS:
        raise ContainerError(f"color must be one of {', '.join(COLORS)}, got {color!r}")
    factors = list(scale_factors) if scale_factors is not None else default_scale_factors(image.shape)
    if not factors or factors[0] != 1 or any(b % a for a, b in zip(factors, factors[1:])):
        raise ContainerError(f"scale_factors must start with 1 and each divide the next, got {factors}")

    if name in f:
        del f[name]
    group = f.create_group(name)
    downscale = nearest_downscale if is_label else block_mean
    want_limits = color != "Glasbey" and limits is None
    if f.backend.background_writes:
        # N5/Zarr: each level's chunks are written in the background while the next is computed here.
        with deferred_writes():
            for i, level in enumerate(_pyramid(image, factors, downscale)):
                group.create_dataset(f"s{i}", data=level, chunks=chunks, compression=compression)
            limits = contrast_limits(image) if want_limits else limits
    else:
        # HDF5 writes from this thread: a helper thread computes the next levels and the limits meanwhile.
        with ThreadPoolExecutor(1, thread_name_prefix="batchlib-pyramid") as helper:
            levels = _pyramid(image, factors, downscale)
            pending = [helper.submit(next, levels) for _ in factors]  # one helper thread: in order
            pending_limits = helper.submit(contrast_limits, image) if want_limits else None
            for i, level in enumerate(pending):
                group.create_dataset(f"s{i}", data=level.result(), chunks=chunks, compression=compression)
            limits = pending_limits.result() if want_limits else limits

    attrs = {
        "Color": color,
        "Visible": bool(visible),
        "Skip": bool(skip),
        "Alpha": float(alpha),
        "ScaleFactors": np.array(factors, dtype=np.int64),
    }
    if color != "Glasbey":
        attrs["ContrastLimits"] = np.asarray(limits, dtype=np.float64)
    if channel_information is not None:
        attrs["ChannelInformation"] = str(channel_information)
    _set_attrs(group, attrs)
    if f.attrs.get(VERSION_ATTR) != __version__:
        f.attrs[VERSION_ATTR] = __version__


def _pyramid(image: np.ndarray, factors: Sequence[int], downscale) -> Iterator[np.ndarray]:
    level = image
    yield level
    for previous, factor in zip(factors, factors[1:]):
        level = downscale(level, factor // previous)
        yield level


def _set_attrs(group, attrs: dict) -> None:
    if group.backend.name != "h5":  # JSON attributes: plain lists
        attrs = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in attrs.items()}
    group.update_attrs(attrs)  # one metadata write where the backend allows


def image_levels(group) -> list[int]:
    """The levels of a multiscale image group (its ``s0``, ``s1``, ... datasets), ascending."""
    return sorted(int(k[1:]) for k in group if k.startswith("s") and k[1:].isdigit())


def read_image(f, name: str, scale: int = 0) -> np.ndarray:
    """Level ``scale`` of the multiscale image ``name`` as a numpy array."""
    key = f"{name}/s{scale}"
    if key not in f:
        levels = [f"s{level}" for level in image_levels(f[name])] if name in f else []
        raise ContainerError(
            f"{f.filename} has no image level {key!r}" + (f"; levels: {', '.join(levels)}" if levels else "")
        )
    return f.backend.read(f[key])


def read_image_later(f, name: str, scale: int = 0) -> Callable[[], np.ndarray]:
    """:func:`read_image`, split: the file is read now, the returned function decompresses (in any thread).

    For a job that reads in one thread (h5py must) and computes in others:
    the decompressing goes with the computing. The function needs no open file.
    """
    key = f"{name}/s{scale}"
    if key not in f:
        read_image(f, name, scale)  # raises the error naming the levels there are
    return f.backend.read_later(f[key])


def has_image(f, name: str) -> bool:
    """True if ``name`` is a multiscale image group (with level ``s0``)."""
    return f"{name}/s0" in f


def image_attrs(f, name: str) -> dict:
    """The viewer attributes of image ``name``, as plain Python values."""
    attrs = {}
    for key, value in dict(f[name].attrs).items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        attrs[key] = value
    return attrs


def set_image_info(f, image_information: str | None = None, well_information: str | None = None) -> None:
    """Set the root attributes the viewer shows (replaced, never appended)."""
    if image_information is not None:
        f.attrs["ImageInformation"] = str(image_information)
    if well_information is not None:
        f.attrs["WellInformation"] = str(well_information)
    f.attrs[VERSION_ATTR] = __version__
