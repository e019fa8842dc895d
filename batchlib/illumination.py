"""Flat-field (illumination) correction: estimate a plate's uneven illumination per channel, and divide it out.

Why: a microscope lights (and its camera sees) the corners of a field less
than its centre; without correction the same cell reads up to tens of
percent dimmer near a corner, and every intensity feature carries the
field's shape.

How (CellProfiler's "CorrectIlluminationCalculate" idea, made robust and
cheap): each image is block-averaged (:data:`BLOCK` pixels a side); at every
position the mean over the plate's images of the values between the 5th and
40th percentile across images is taken (:data:`TRIM`: mostly background, lit
by the same field as the cells, so cells and artefacts hardly count); a
smooth surface, a 2D polynomial of :data:`DEGREE` (vignetting is radial and
smooth, a tilt is linear), is fitted to the logarithm of that image by least
squares (the field multiplies; its exponential is positive whatever the
fall-off), leaving out blocks far above the surface (a spot where cells sat
in most images) and fitting again; the surface is
divided by its mean, so the field averages 1 and dividing by it keeps the
plate's intensity scale. The polynomial fit, unlike a large Gaussian or
median filter, has no border artefacts and needs few images: cells placed at
random average out where the fit is smooth.

Not BaSiC (a low-rank + sparse decomposition): its package, ``basicpy``,
pulls in torch and pins scipy<1.13.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

#: Block size (pixels) images are averaged over before the fit: the field is smooth.
BLOCK = 8
#: Degree of the 2D polynomial fitted to the mean image.
DEGREE = 4
#: Percentiles across images between which values are averaged (a trimmed mean).
TRIM = (5.0, 40.0)


def block_mean(image: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """``image`` averaged over ``block`` x ``block`` blocks (a ragged edge is dropped); NaN-aware."""
    h, w = image.shape[0] // block * block, image.shape[1] // block * block
    if h == 0 or w == 0:
        raise ValueError(f"an image of {image.shape} is smaller than one block of {block} pixels")
    blocks = image[:h, :w].astype(np.float32).reshape(h // block, block, w // block, block)
    return np.nanmean(blocks, axis=(1, 3))


def _design(shape: tuple[int, int], full: tuple[int, int], degree: int, block: int) -> np.ndarray:
    """Polynomial terms y^i x^j (i + j <= degree) at the centres of ``shape`` blocks of a ``full`` image, in [-1, 1]."""
    ys = (np.arange(shape[0]) + 0.5) * block
    xs = (np.arange(shape[1]) + 0.5) * block
    y = (2 * ys / full[0] - 1)[:, None] * np.ones((1, shape[1]))
    x = (2 * xs / full[1] - 1)[None, :] * np.ones((shape[0], 1))
    terms = [(y**i * x**j).ravel() for i in range(degree + 1) for j in range(degree + 1 - i)]
    return np.stack(terms, axis=1)


def _evaluate(coefficients: np.ndarray, full: tuple[int, int], degree: int) -> np.ndarray:
    """The polynomial at every pixel of a ``full`` image: a sum of outer products, never a (pixels x terms) matrix."""
    y = 2 * (np.arange(full[0]) + 0.5) / full[0] - 1
    x = 2 * (np.arange(full[1]) + 0.5) / full[1] - 1
    field = np.zeros(full, np.float64)
    k = 0
    for i in range(degree + 1):
        row = np.zeros(full[1])
        for j in range(degree + 1 - i):
            row += coefficients[k] * x**j
            k += 1
        field += np.outer(y**i, row)
    return field


def _robust_fit(design: np.ndarray, values: np.ndarray, rounds: int = 5) -> np.ndarray:
    """Least squares that leaves out blocks far above the surface (a spot where cells sat in most images)."""
    kept = np.isfinite(values)
    for _ in range(rounds):
        coefficients, *_ = np.linalg.lstsq(design[kept], values[kept], rcond=None)
        residual = values - design @ coefficients
        scale = 1.4826 * np.median(np.abs(residual[kept])) + 1e-12
        now = np.isfinite(values) & (residual < 2.5 * scale) & (residual > -4 * scale)
        if np.array_equal(now, kept) or now.sum() < design.shape[1] * 3:
            break
        kept = now
    return coefficients


def estimate_flat_field(
    images: Iterable[np.ndarray], degree: int = DEGREE, block: int = BLOCK, trim: tuple[float, float] = TRIM
) -> np.ndarray:
    """The illumination field of a set of images of one channel: smooth, mean 1, the images' shape.

    Parameters
    ----------
    images : iterable of ndarray
        2D images of one channel, all of one shape (a plate's fields).
    degree : int
        Degree of the fitted 2D polynomial.
    block : int
        Block size of the averaging before the fit.
    trim : (float, float)
        Percentiles across images between which values are averaged.

    Returns
    -------
    ndarray
        float32, the images' shape; divide an image by it to correct it.

    Examples
    --------
    >>> yy, xx = np.mgrid[-1:1:128j, -1:1:128j]
    >>> field = 1 - 0.3 * (yy**2 + xx**2) / 2
    >>> est = estimate_flat_field([field * 100 + np.random.default_rng(i).normal(0, 1, field.shape) for i in range(8)])
    >>> bool(np.abs(est / (field / field.mean()) - 1).max() < 0.02)
    True
    """
    reduced, full = [], None
    for image in images:
        if full is None:
            full = image.shape
        elif image.shape != full:
            raise ValueError(f"images of one channel must share a shape: {image.shape} after {full}")
        reduced.append(block_mean(image, block))
    return flat_field_from_blocks(reduced, full, degree, block, trim)


def flat_field_from_blocks(
    reduced: list[np.ndarray],
    full: tuple[int, int],
    degree: int = DEGREE,
    block: int = BLOCK,
    trim: tuple[float, float] = TRIM,
) -> np.ndarray:
    """:func:`estimate_flat_field` from images already block-averaged (:func:`block_mean`; e.g. in workers).

    ``full`` is the images' shape before averaging.
    """
    if not reduced:
        raise ValueError("no images to estimate the illumination from")
    stack = np.stack(reduced)
    if len(stack) >= 3:
        lo, hi = np.nanpercentile(stack, trim, axis=0)
        inside = (stack >= lo) & (stack <= hi)
        mean = np.nansum(np.where(inside, stack, 0), axis=0) / np.maximum(inside.sum(axis=0), 1)
    else:
        mean = np.nanmean(stack, axis=0)
    if not np.nanmax(mean) > 0:
        raise ValueError("the images are dark (no positive pixel): no illumination to estimate")
    # In log space the field multiplies (a surface of any fall-off stays positive) and outliers count less.
    logs = np.log(np.clip(mean, np.nanmax(mean) * 1e-3, None))
    coefficients = _robust_fit(_design(mean.shape, full, degree, block), logs.ravel())
    field = np.exp(_evaluate(coefficients, full, degree))
    return (field / field.mean()).astype(np.float32)


def apply_flat_field(image: np.ndarray, field: np.ndarray) -> np.ndarray:
    """``image`` divided by the illumination ``field``, in the image's own type.

    An integer image stays integer (rounded, clipped to its type's range:
    the measurements keep their fast integer path and the pixels their
    precision); a float image is divided as float32.

    Examples
    --------
    >>> apply_flat_field(np.array([[10, 20]], np.uint16), np.array([[0.5, 2.0]], np.float32)).tolist()
    [[20, 10]]
    >>> apply_flat_field(np.array([[60000]], np.uint16), np.array([[0.5]], np.float32)).tolist()  # clipped
    [[65535]]
    """
    if image.shape != field.shape:
        raise ValueError(f"image of shape {image.shape} and illumination field of shape {field.shape} differ")
    corrected = np.divide(image, field, dtype=np.float32)
    if image.dtype.kind in "ui":
        limits = np.iinfo(image.dtype)
        np.rint(corrected, out=corrected)
        np.clip(corrected, limits.min, limits.max, out=corrected)
        return corrected.astype(image.dtype)
    return corrected


#: Re-estimate a plate's field once more than this share of the images it came from are new, changed or gone.
REESTIMATE_SHARE = 0.2

ESTIMATE, KEEP = "estimate", "keep"


def reestimate_action(
    previous: dict[str, str] | None, current: dict[str, str], share: float = REESTIMATE_SHARE
) -> tuple[str, str]:
    """Whether to estimate the field again, and why: a pure function of the images' stamps then and now.

    Parameters
    ----------
    previous : dict or None
        Image name -> stamp of the images the field was estimated from (None: no field yet).
    current : dict
        Image name -> stamp of the plate's images now.
    share : float
        Re-estimate once more than this share of ``previous`` is new, changed or gone.

    Examples
    --------
    >>> reestimate_action(None, {"a": "1"})
    ('estimate', 'no field yet')
    >>> before = {str(i): "s" for i in range(10)}
    >>> reestimate_action(before, {**before, "10": "s"})[0]  # one new image of ten: the field holds
    'keep'
    >>> reestimate_action(before, {**before, "10": "s", "11": "s", "0": "changed"})
    ('estimate', '3 of the 10 images it came from are new, changed or gone (30% > 20%)')
    """
    if previous is None:
        return ESTIMATE, "no field yet"
    differ = sum(1 for name, stamp in current.items() if previous.get(name) != stamp)
    differ += sum(1 for name in previous if name not in current)
    fraction = differ / max(len(previous), 1)
    words = f"{differ} of the {len(previous)} images it came from are new, changed or gone"
    if fraction > share:
        return ESTIMATE, f"{words} ({fraction:.0%} > {share:.0%})"
    return KEEP, f"{words} ({fraction:.0%} <= {share:.0%}): the field is kept"
