"""Synthetic plate images: nuclei, cells and a marker, with ground truth.

Used by ``batchlib demo``, the tests and the training script of the shipped
nuclei model. The images are meant to look like widefield HTS data: nuclei
of varying size, shape and brightness, some touching or clustered, on an
uneven background with shot noise; a cell channel whose bodies surround the
nuclei; a marker whose level is set per well.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def _ellipse_mask(
    shape: tuple[int, int], center: tuple[float, float], axes: tuple[float, float], angle: float
) -> tuple[np.ndarray, np.ndarray]:
    radius = int(np.ceil(max(axes))) + 2
    cy, cx = center
    y0, y1 = max(int(cy) - radius, 0), min(int(cy) + radius + 1, shape[0])
    x0, x1 = max(int(cx) - radius, 0), min(int(cx) + radius + 1, shape[1])
    if y1 <= y0 or x1 <= x0:  # entirely outside the image
        return np.empty(0, int), np.empty(0, int)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dy, dx = yy - cy, xx - cx
    cos, sin = np.cos(angle), np.sin(angle)
    u = (dx * cos + dy * sin) / axes[0]
    v = (-dx * sin + dy * cos) / axes[1]
    inside = u**2 + v**2 <= 1.0
    return yy[inside], xx[inside]


def nuclei_labels(
    shape: tuple[int, int] = (256, 256),
    n_nuclei: int = 40,
    radius: tuple[float, float] = (6, 12),
    cluster_fraction: float = 0.3,
    rng: np.random.Generator | int | None = 0,
) -> np.ndarray:
    """Label image of elliptic nuclei; some are placed touching others (clusters).

    Parameters
    ----------
    shape : tuple
        Image shape (y, x).
    n_nuclei : int
        Nuclei to try to place (overlapping placements are dropped).
    radius : tuple
        Range of the semi-axes in pixels.
    cluster_fraction : float
        Share of nuclei placed right next to an earlier one.
    rng : Generator or int
        Random generator or seed.

    Returns
    -------
    numpy.ndarray of uint32, 0 = background, 1..n = nuclei.
    """
    rng = np.random.default_rng(rng)
    labels = np.zeros(shape, dtype=np.uint32)
    centers: list[tuple[float, float, float]] = []
    next_id = 1
    for _ in range(n_nuclei * 3):
        if next_id > n_nuclei:
            break
        a = rng.uniform(*radius)
        b = a * rng.uniform(0.6, 1.0)
        if centers and rng.random() < cluster_fraction:
            py, px, pr = centers[rng.integers(len(centers))]
            direction = rng.uniform(0, 2 * np.pi)
            distance = pr + a * 0.95
            center = (py + distance * np.sin(direction), px + distance * np.cos(direction))
        else:
            center = (rng.uniform(a, shape[0] - a), rng.uniform(a, shape[1] - a))
        yy, xx = _ellipse_mask(shape, center, (a, b), rng.uniform(0, np.pi))
        if len(yy) < 10:
            continue
        # Touching is fine, overlapping is not: drop placements that overlap much.
        if (labels[yy, xx] > 0).mean() > 0.05:
            continue
        free = labels[yy, xx] == 0
        labels[yy[free], xx[free]] = next_id
        centers.append((center[0], center[1], a))
        next_id += 1
    return labels


def cell_labels(nuclei: np.ndarray, grow: int = 12) -> np.ndarray:
    """Cells grown from the nuclei (each cell keeps its nucleus' id), split where they meet."""
    distance, (iy, ix) = ndi.distance_transform_edt(nuclei == 0, return_indices=True)
    cells = nuclei[iy, ix]
    cells[distance > grow] = 0
    return cells.astype(np.uint32)


def render_channels(
    nuclei: np.ndarray, cells: np.ndarray, marker_level: float = 1.0, rng: np.random.Generator | int | None = 0
) -> dict[str, np.ndarray]:
    """Intensity images (uint16) of nuclei, cells and a marker for given labels.

    The marker is brighter in the cytoplasm, scaled by ``marker_level`` (the
    per-well effect).
    """
    rng = np.random.default_rng(rng)
    shape = nuclei.shape
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    background = 150 + 80 * np.sin(yy / shape[0] * np.pi) * np.cos(xx / shape[1] * np.pi / 2)

    n_ids = int(nuclei.max()) + 1
    brightness = np.concatenate([[0.0], rng.uniform(600, 2400, n_ids - 1)])
    nuclei_img = ndi.gaussian_filter(brightness[nuclei] * (1 + 0.15 * rng.standard_normal(shape)), 1.2)
    cell_brightness = np.concatenate([[0.0], rng.uniform(300, 800, n_ids - 1)])
    cell_img = ndi.gaussian_filter(cell_brightness[cells] * (1 + 0.1 * rng.standard_normal(shape)), 1.5)
    per_cell = np.concatenate([[0.0], rng.lognormal(0, 0.25, n_ids - 1)]) * 400 * marker_level
    cytoplasm = (cells > 0) & (nuclei == 0)
    marker_img = ndi.gaussian_filter(per_cell[cells] * np.where(cytoplasm, 1.0, 0.3), 1.0)

    channels = {}
    for name, img in (("nuclei", nuclei_img), ("cells", cell_img), ("marker", marker_img)):
        noisy = rng.poisson(np.clip(img + background, 0, None)).astype(np.float64)
        channels[name] = np.clip(noisy, 0, 65535).astype(np.uint16)
    return channels


def synthetic_site(
    shape: tuple[int, int] = (256, 256), n_nuclei: int = 40, marker_level: float = 1.0, seed: int = 0
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """One field of view: channel images and the nuclei and cell ground truth.

    Examples
    --------
    >>> channels, nuclei, cells = synthetic_site((64, 64), n_nuclei=4, seed=1)
    >>> sorted(channels), channels["nuclei"].dtype.name, nuclei.shape
    (['cells', 'marker', 'nuclei'], 'uint16', (64, 64))
    >>> bool(set(np.unique(cells)) == set(np.unique(nuclei)))
    True
    """
    rng = np.random.default_rng(seed)
    nuclei = nuclei_labels(shape, n_nuclei, rng=rng)
    cells = cell_labels(nuclei)
    return render_channels(nuclei, cells, marker_level, rng=rng), nuclei, cells


def brighten_nuclei(image: np.ndarray, labels: np.ndarray, factor: float, count: int) -> np.ndarray:
    """``image`` with its first ``count`` nuclei (lowest label ids) ``factor`` times brighter above the background.

    The background is the image's 5th percentile; the result keeps the
    dtype's range (clipped), unsaturated unless the factor takes it there.

    Examples
    --------
    >>> channels, nuclei, _ = synthetic_site((64, 64), n_nuclei=4, seed=1)
    >>> brighter = brighten_nuclei(channels["nuclei"], nuclei, 5.0, 1)
    >>> first = nuclei == np.unique(nuclei[nuclei > 0])[0]
    >>> bool(brighter[first].mean() > 3 * channels["nuclei"][first].mean()), brighter.dtype.name
    (True, 'uint16')
    >>> bool((brighter[~first] == channels["nuclei"][~first]).all())
    True
    """
    values = image.astype(np.float64)
    background = np.percentile(values, 5)
    bright = np.isin(labels, np.unique(labels[labels > 0])[:count])
    values[bright] = background + (values[bright] - background) * factor
    limits = np.iinfo(image.dtype) if image.dtype.kind in "iu" else np.finfo(image.dtype)
    return np.clip(values, limits.min, limits.max).astype(image.dtype)
