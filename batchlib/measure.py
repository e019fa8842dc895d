"""Per-object features of label images, vectorized over all objects at once.

Every feature is computed for all objects together from the foreground pixels
(bincount, sorting by label and reduceat), never with a Python loop per
object; the numbers equal scikit-image's ``regionprops`` (and ``np.percentile``
per object for medians and quartiles). Names follow CellProfiler, so the
tables feed pycytominer: ``<Compartment>_AreaShape_Area``,
``<Compartment>_Intensity_MeanIntensity_<Channel>``.

Solidity needs each object's convex hull: the hulls of all objects are built
together too (see :func:`convex_areas`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

INTENSITY_FEATURES = (
    "MeanIntensity",
    "IntegratedIntensity",
    "StdIntensity",
    "MinIntensity",
    "MaxIntensity",
    "MedianIntensity",
    "LowerQuartileIntensity",
    "UpperQuartileIntensity",
)

# Weights of scikit-image's perimeter() by the code 1 + 2 * (4-neighbours) + 10 * (diagonal neighbours).
_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
_PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + np.sqrt(2)) / 2


class ObjectPixels:
    """The foreground pixels of a label image, grouped by object.

    Attributes
    ----------
    ids : ndarray
        Object ids present, ascending.
    counts : ndarray
        Pixels per object.
    index : ndarray
        Flat indices of the foreground pixels, sorted by object id (and by
        position within an object).
    starts : ndarray
        Where each object's pixels start in ``index``.
    """

    def __init__(self, labels: np.ndarray):
        self.shape = labels.shape
        flat = labels.ravel()
        foreground = np.flatnonzero(flat)
        values = flat[foreground]
        # Stable sort by id; small ids sort in linear time (radix sort).
        key = values.astype(np.uint16) if values.size and values.max() < 2**16 else values
        order = np.argsort(key, kind="stable")
        self.index = foreground[order]
        self.object_of_pixel = values[order]
        # Runs of equal ids in the sorted array (no second sort, as np.unique would do).
        changes = np.flatnonzero(self.object_of_pixel[1:] != self.object_of_pixel[:-1]) + 1
        self.starts = np.concatenate([[0], changes]) if values.size else np.zeros(0, np.int64)
        self.ids = self.object_of_pixel[self.starts]
        self.counts = np.diff(np.append(self.starts, values.size))

    def reduce(self, ufunc: np.ufunc, values: np.ndarray) -> np.ndarray:
        """``ufunc.reduceat`` of per-pixel ``values`` (ordered like :attr:`index`) per object."""
        if not len(self.ids):
            return np.zeros(0, dtype=values.dtype)
        return ufunc.reduceat(values, self.starts)


def shape_features(labels: np.ndarray, pixels: ObjectPixels | None = None, solidity: bool = True) -> pd.DataFrame:
    """Area, centroid, bounding box, eccentricity, perimeter and solidity of every object.

    Parameters
    ----------
    labels : ndarray
        2D label image (0 = background).
    pixels : ObjectPixels, optional
        Precomputed grouping of ``labels`` (shared with the intensity features).
    solidity : bool
        Compute solidity (area / convex hull area; per-object hulls).

    Returns
    -------
    DataFrame with ``label_id`` and ``AreaShape_*`` columns, one row per object.

    Examples
    --------
    >>> labels = np.zeros((5, 6), int); labels[1:3, 1:4] = 7
    >>> shape_features(labels)[["label_id", "AreaShape_Area", "AreaShape_Center_Y", "AreaShape_Perimeter"]]
       label_id  AreaShape_Area  AreaShape_Center_Y  AreaShape_Perimeter
    0         7             6.0                 1.5                  6.0
    """
    pixels = pixels or ObjectPixels(labels)
    rows, cols = np.divmod(pixels.index, labels.shape[1])
    rows, cols = rows.astype(np.float64), cols.astype(np.float64)
    n = pixels.counts.astype(np.float64)
    sum_r, sum_c = pixels.reduce(np.add, rows), pixels.reduce(np.add, cols)
    cen_r, cen_c = sum_r / n, sum_c / n
    # Central moments from the per-pixel offsets to the centroid (no cancellation).
    dr = rows - np.repeat(cen_r, pixels.counts)
    dc = cols - np.repeat(cen_c, pixels.counts)
    mu20, mu02, mu11 = pixels.reduce(np.add, dr * dr), pixels.reduce(np.add, dc * dc), pixels.reduce(np.add, dr * dc)
    a, b, c = mu02 / n, -mu11 / n, mu20 / n  # scikit-image's inertia tensor [[a, b], [b, c]]
    half_trace, root = (a + c) / 2, np.sqrt(((a - c) / 2) ** 2 + b * b)
    l1, l2 = np.clip(half_trace + root, 0, None), np.clip(half_trace - root, 0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        eccentricity = np.where(l1 == 0, 0.0, np.sqrt(np.clip(1 - l2 / np.where(l1 == 0, 1, l1), 0, None)))

    table = {
        "label_id": pixels.ids,
        "AreaShape_Area": n,
        "AreaShape_Center_Y": cen_r,
        "AreaShape_Center_X": cen_c,
        "AreaShape_BoundingBoxMinimum_Y": pixels.reduce(np.minimum, rows),
        "AreaShape_BoundingBoxMinimum_X": pixels.reduce(np.minimum, cols),
        "AreaShape_BoundingBoxMaximum_Y": pixels.reduce(np.maximum, rows) + 1,
        "AreaShape_BoundingBoxMaximum_X": pixels.reduce(np.maximum, cols) + 1,
        "AreaShape_Eccentricity": eccentricity,
        "AreaShape_Perimeter": perimeters(labels, pixels),
    }
    if solidity:
        table["AreaShape_Solidity"] = n / convex_areas(pixels, labels.shape[1])
    return pd.DataFrame(table)


def perimeters(labels: np.ndarray, pixels: ObjectPixels) -> np.ndarray:
    """Perimeter of every object, as ``skimage.measure.perimeter(object, neighborhood=4)``.

    A pixel is on its object's border unless its four neighbours belong to the
    object; each border pixel is weighted by how many border pixels of the same
    object touch it (the 3 x 3 code scikit-image uses). Only foreground pixels
    are visited; neighbours outside the image count as background.
    """
    h, w = labels.shape
    flat = labels.ravel()
    rows, cols = np.divmod(pixels.index, w)
    own = pixels.object_of_pixel

    def same_object(index, r, c, own_id, dy, dx):
        inside = (r + dy >= 0) & (r + dy < h) & (c + dx >= 0) & (c + dx < w)
        neighbour = np.where(inside, index + dy * w + dx, 0)
        return inside & (flat[neighbour] == own_id), neighbour

    interior = np.ones(own.shape, bool)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        interior &= same_object(pixels.index, rows, cols, own, dy, dx)[0]
    border = ~interior
    b_index, b_rows, b_cols, b_own = pixels.index[border], rows[border], cols[border], own[border]
    is_border = np.zeros(flat.shape, bool)
    is_border[b_index] = True
    code = np.ones(b_index.shape, np.int64)
    for dy, dx, weight in (
        (-1, 0, 2),
        (1, 0, 2),
        (0, -1, 2),
        (0, 1, 2),
        (-1, -1, 10),
        (-1, 1, 10),
        (1, -1, 10),
        (1, 1, 10),
    ):
        same, neighbour = same_object(b_index, b_rows, b_cols, b_own, dy, dx)
        code += weight * (same & is_border[neighbour])
    per_pixel = _PERIMETER_WEIGHTS[np.minimum(code, 49)]
    position = np.searchsorted(pixels.ids, b_own)
    return np.bincount(position, weights=per_pixel, minlength=len(pixels.ids))


def convex_areas(pixels: ObjectPixels, width: int) -> np.ndarray:
    """Pixel count of each object's convex hull image, as regionprops' ``area_convex``, for all objects at once.

    scikit-image takes the hull of the edge midpoints (pixel centre +- 0.5) of
    the first and last pixel of every row and column, then counts the pixel
    centres inside or on it. Here the hull's left and right chains are built
    for all objects together (a monotone chain whose stack steps run in
    lockstep over objects), and each pixel row of an object counts the
    integers between the chains.
    """
    n_objects = len(pixels.ids)
    if not n_objects:
        return np.zeros(0)
    rows, cols = np.divmod(pixels.index, width)
    # Pixels are sorted by object, then by position: runs of (object, row) give each row's first and last pixel.
    objects = np.repeat(np.arange(n_objects), pixels.counts)
    row_key = objects.astype(np.int64) * (np.int64(rows.max()) + 1) + rows
    change = np.flatnonzero(np.diff(row_key)) + 1
    first = np.concatenate([[0], change])
    last = np.append(change, len(row_key)) - 1
    row_object, row = objects[first], rows[first].astype(np.float64)
    extents = []
    for side, column in ((-1.0, cols[first]), (1.0, cols[last])):
        column = column.astype(np.float64)
        ys = np.stack([row - 0.5, row, row + 0.5], 1).ravel()
        # The right side is mirrored (x -> -x), so that both sides are minimal-x chains.
        xs = -side * np.stack([column, column + 0.5 * side, column], 1).ravel()
        owners = np.repeat(row_object, 3)
        order = np.lexsort((xs, ys, owners))
        chain_y, chain_x, length = _left_chains(owners[order], ys[order], xs[order], n_objects)
        extents.append(-side * _chain_at_rows(chain_y, chain_x, length, pixels, rows))
    left, right = extents
    per_row = np.maximum(np.floor(right + 1e-9) - np.ceil(left - 1e-9) + 1, 0)
    row_counts = np.maximum.reduceat(rows, pixels.starts) - np.minimum.reduceat(rows, pixels.starts) + 1
    return np.bincount(np.repeat(np.arange(n_objects), row_counts), weights=per_row, minlength=n_objects)


def _left_chains(owners: np.ndarray, ys: np.ndarray, xs: np.ndarray, n_objects: int):
    """The minimal-x convex chain of each object's points (sorted by object, y, x): vertices and lengths."""
    counts = np.bincount(owners, minlength=n_objects)
    width = int(counts.max())
    position = np.arange(len(owners)) - np.repeat(np.cumsum(counts) - counts, counts)
    points_y = np.zeros((n_objects, width))
    points_x = np.zeros((n_objects, width))
    points_y[owners, position], points_x[owners, position] = ys, xs
    stack_y, stack_x = np.zeros((n_objects, width)), np.zeros((n_objects, width))
    top = np.zeros(n_objects, np.int64)
    every = np.arange(n_objects)
    for k in range(width):
        active = k < counts
        new_y, new_x = points_y[:, k], points_x[:, k]
        while True:  # pop while the last two stack points and the new one do not turn outwards
            can = active & (top >= 2)
            if not can.any():
                break
            a, b = np.maximum(top - 2, 0), np.maximum(top - 1, 0)
            oy, ox, ay, ax = stack_y[every, a], stack_x[every, a], stack_y[every, b], stack_x[every, b]
            pop = can & ((ay - oy) * (new_x - ox) - (ax - ox) * (new_y - oy) <= 0)
            if not pop.any():
                break
            top -= pop
        stack_y[every[active], top[active]] = new_y[active]
        stack_x[every[active], top[active]] = new_x[active]
        top += active
    return stack_y, stack_x, top


def _chain_at_rows(chain_y, chain_x, length, pixels: ObjectPixels, rows: np.ndarray) -> np.ndarray:
    """x of each object's chain at every pixel row of the object (objects, then rows, in order)."""
    n_objects = len(length)
    valid = np.arange(chain_y.shape[1])[None, :] < length[:, None]
    owner = np.nonzero(valid)[0]
    vy, vx = chain_y[valid], chain_x[valid]
    rmin = np.minimum.reduceat(rows, pixels.starts)
    rmax = np.maximum.reduceat(rows, pixels.starts)
    n_rows = rmax - rmin + 1
    query_owner = np.repeat(np.arange(n_objects), n_rows)
    query_y = np.arange(n_rows.sum()) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows) + np.repeat(rmin, n_rows)
    span = float(rows.max()) + 2  # keys object * span + y sort objects apart
    vertex_key = owner * span + vy
    j = np.clip(np.searchsorted(vertex_key, query_owner * span + query_y, side="right"), 1, len(vy) - 1)
    y0, y1, x0, x1 = vy[j - 1], vy[j], vx[j - 1], vx[j]
    step = np.where(y1 > y0, y1 - y0, 1.0)
    t = np.where((owner[j - 1] == owner[j]) & (y1 > y0), (query_y - y0) / step, 0.0)
    return x0 + t * (x1 - x0)


def _sorted_within_objects(pixels: ObjectPixels, values: np.ndarray) -> np.ndarray:
    """``values`` (in object order) sorted within each object, as float64."""
    n_objects = len(pixels.ids)
    if values.dtype.kind == "u" and values.dtype.itemsize <= 2 and n_objects < 2**16:
        # One sort of 32-bit keys (object rank, value): vectorized by numpy, no argsort, no gather.
        rank = np.repeat(np.arange(n_objects, dtype=np.uint32), pixels.counts)
        keys = np.sort((rank << np.uint32(16)) | values.astype(np.uint32))
        return (keys & np.uint32(0xFFFF)).astype(np.float64)
    by_value = np.argsort(values, kind="stable")
    by_object = by_value[np.argsort(pixels.object_of_pixel[by_value], kind="stable")]
    return values[by_object].astype(np.float64)


def intensity_features(pixels: ObjectPixels, image: np.ndarray, channel: str) -> pd.DataFrame:
    """Mean, sum, std, min, max, median and quartiles of ``image`` in every object.

    Medians and quartiles interpolate linearly, as ``np.percentile``.

    Examples
    --------
    >>> labels = np.array([[1, 1, 2], [1, 0, 2]])
    >>> image = np.array([[1.0, 2.0, 10.0], [4.0, 99.0, 20.0]])
    >>> intensity_features(ObjectPixels(labels), image, "GFP")["Intensity_MedianIntensity_GFP"].tolist()
    [2.0, 15.0]
    """
    values = image.ravel()[pixels.index]
    as_float = values.astype(np.float64)
    n = pixels.counts.astype(np.float64)
    total = pixels.reduce(np.add, as_float)
    mean = total / n
    deviation = as_float - np.repeat(mean, pixels.counts)
    std = np.sqrt(pixels.reduce(np.add, deviation * deviation) / n)
    ordered = _sorted_within_objects(pixels, values)

    def quantile(q: float) -> np.ndarray:
        position = q * (n - 1)
        below = np.floor(position).astype(np.int64)
        above = np.minimum(below + 1, pixels.counts - 1)
        lo, hi = ordered[pixels.starts + below], ordered[pixels.starts + above]
        return lo + (position - below) * (hi - lo)

    features = {
        "MeanIntensity": mean,
        "IntegratedIntensity": total,
        "StdIntensity": std,
        "MinIntensity": ordered[pixels.starts] if len(pixels.ids) else np.zeros(0),
        "MaxIntensity": ordered[pixels.starts + pixels.counts - 1] if len(pixels.ids) else np.zeros(0),
        "MedianIntensity": quantile(0.5),
        "LowerQuartileIntensity": quantile(0.25),
        "UpperQuartileIntensity": quantile(0.75),
    }
    return pd.DataFrame({f"Intensity_{name}_{channel}": values for name, values in features.items()})


def measure_objects(
    labels: np.ndarray, images: Mapping[str, np.ndarray], compartment: str, solidity: bool = True
) -> pd.DataFrame:
    """Shape and intensity features of every object, CellProfiler names.

    Parameters
    ----------
    labels : ndarray
        Objects (0 = background).
    images : dict
        Channel name -> image of the same shape.
    compartment : str
        ``Nuclei``, ``Cells`` or ``Cytoplasm``: the column prefix.
    solidity : bool
        Include ``AreaShape_Solidity``.

    Returns
    -------
    DataFrame: ``label_id`` then ``<compartment>_AreaShape_*`` and
    ``<compartment>_Intensity_*_<channel>`` columns.
    """
    pixels = ObjectPixels(labels)
    parts = [shape_features(labels, pixels, solidity)]
    parts += [intensity_features(pixels, image, channel) for channel, image in images.items()]
    table = pd.concat(parts, axis=1)
    table.columns = ["label_id"] + [f"{compartment}_{c}" for c in table.columns[1:]]
    return table
