"""Synthetic fluorescence nuclei images with ground truth, at any nucleus size.

Made for training and evaluating nuclei segmentation on data unlike the
shipped model's: nucleus diameters from 6 to 120 pixels, widefield and
confocal looks, sparse to confluent fields. :func:`nuclei_image` returns an
image and its label image; :class:`Appearance` holds every knob and
:func:`random_appearance` draws one over the whole variety.

How an image is made:

1. Geometry. Objects are placed at random positions, or (a share
   ``clump_fraction``) right against another one. Each is an ellipse in
   normalized coordinates, optionally dented on one long side (a bean, or
   kidney) and with a radial Fourier perturbation of its outline (lobes).
   Where two objects would overlap, each pixel goes to the object whose
   centre is closer in normalized radius, so touching nuclei are pressed
   flat against each other and never overlap; an object that would share
   more than a fifth of the smaller one's area is placed elsewhere (all
   objects at once, then those rejected, in up to 6 rounds; what does not
   fit is left out). Every step works on arrays of objects, not per pixel.
2. Ground truth. Objects left with fewer than 4 pixels (cut by the border,
   squeezed) are dropped, a piece cut off from its object is dropped, and
   the rest get ids 1..n. Only then is the image rendered, from exactly
   these labels.
3. Intensity, per pixel of each object: its brightness times a dome profile
   (widefield: thicker in the middle), an optional bright rim (confocal),
   a chromatin texture (a smooth random field, lognormal), dark nucleoli
   and a slight dip where two nuclei touch.
4. Optics and camera: a Gaussian PSF plus an optional wide halo of
   out-of-focus light and extra defocus blur, a background with smooth haze,
   illumination that falls off with a gradient and towards the corners,
   Poisson shot noise, Gaussian read noise, a camera offset, a gamma, and
   clipping at the dtype's maximum (saturation).

Object kinds: normal interphase nuclei; condensed mitotic nuclei (prophase
to metaphase: small, bright, compact or a bar seen edge-on), one object
each; anaphase / telophase pairs, two objects; apoptotic nuclei, a cluster
of 3-8 small bright round fragments, **one object per fragment**: the
fragments are separate blobs in the image (as most nuclei annotations
treat them), a star-convex model such as StarDist can only represent them
one by one, and merging fragments after segmentation is easy while
splitting a merged annotation is not.

Intensities are fractions of the full scale of the output dtype (1.0 is
65535 for uint16, 255 for uint8, 1.0 for float32); read noise is in
photo-electrons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

from .synthetic_geometry import NORMAL, Objects, clean_labels, in_image, pixel_boxes, place_objects

_DTYPE_MAX = {"uint16": 65535, "uint8": 255, "float32": 1.0}


@dataclass
class Appearance:
    """Every knob of a synthetic nuclei image.

    The defaults give a plausible widefield image: moderately dense,
    some clumps, slight variation of shape and brightness, a few mitoses.
    Sizes relative to the nucleus are fractions of the ``diameter`` given
    to :func:`nuclei_image`; intensities are fractions of the dtype's
    full scale.

    Attributes
    ----------
    size_sigma : float
        Lognormal sigma of the nuclei's equivalent diameters (median = ``diameter``).
    elongation : float
        Mean of aspect ratio - 1 (exponentially distributed, aspect at most 3).
    irregularity : float
        Relative RMS of the radial Fourier perturbation of the outline (harmonics 2-7); 0 gives ellipses.
    kidney_fraction : float
        Share of nuclei made bean / kidney shaped: elongated (aspect at least 1.5-2.2), the middle of one
        long side pulled in by 40-70% of the half width.
    mitotic_fraction : float
        Share of objects that are condensed mitotic nuclei (one object each).
    mitotic_pair_fraction : float
        Share of objects that are anaphase / telophase pairs (two objects each).
    apoptotic_fraction : float
        Share of objects that are apoptotic clusters of 3-8 fragments (one object per fragment).
    density : float
        Fraction of the image to cover with nuclei; about 0.6 is a confluent monolayer (what fits is placed).
    n_nuclei : int or None
        Number of objects to place instead of ``density``.
    clump_fraction : float
        Share of objects placed pressed against an earlier one.
    brightness : float
        Median signal of a nucleus above the background.
    brightness_sigma : float
        Lognormal sigma of the per-nucleus brightness.
    saturated_fraction : float
        Share of objects, the brightest, that saturate: the exposure (signal and background) is raised
        until they reach 1.2-2x the full scale, and they are clipped; 0 leaves the exposure as it is.
        The background is kept below 0.25, so nuclei of a low-contrast image may not reach saturation.
    dome : float
        0-1: how much the intensity falls from the centre to the edge (0 flat, 1 a hemisphere).
    rim : float
        Extra brightness of the nuclear periphery, relative (confocal; 0 none).
    texture : float
        Standard deviation of the log chromatin texture (0 smooth).
    texture_scale : float
        Correlation length of the texture, fraction of ``diameter``.
    nucleoli : float
        Mean number of dark nucleoli per interphase nucleus.
    psf_sigma : float
        Gaussian PSF sigma in pixels; at most 0.2 * diameter + 0.5 is used
        (small nuclei are imaged at low magnification, where the PSF spans few pixels).
    defocus : float
        Extra Gaussian blur sigma, fraction of ``diameter`` (out of focus; 0 in focus).
    halo : float
        Fraction of the light spread in a wide halo (widefield out-of-focus glow; 0 confocal).
    background : float
        Background level.
    haze : float
        Relative amplitude of smooth random background variations.
    gradient : float
        Relative illumination change across the field (linear, random direction).
    vignetting : float
        Relative illumination loss in the corners.
    noise : bool
        Shot and read noise; False gives the noiseless render.
    photons : float
        Photons of a pixel at ``brightness`` (sets the shot noise).
    read_noise : float
        Read noise sigma in photo-electrons.
    offset : float
        Camera offset added after the noise.
    gamma : float
        Gamma applied to the recorded intensities (1 linear).
    dtype : str
        ``"uint16"``, ``"uint8"`` or ``"float32"`` (float32 in 0..1).
    """

    size_sigma: float = 0.2
    elongation: float = 0.25
    irregularity: float = 0.04
    kidney_fraction: float = 0.05
    mitotic_fraction: float = 0.02
    mitotic_pair_fraction: float = 0.01
    apoptotic_fraction: float = 0.01
    density: float = 0.25
    n_nuclei: int | None = None
    clump_fraction: float = 0.3
    brightness: float = 0.1
    brightness_sigma: float = 0.25
    saturated_fraction: float = 0.0
    dome: float = 0.5
    rim: float = 0.0
    texture: float = 0.15
    texture_scale: float = 0.08
    nucleoli: float = 1.0
    psf_sigma: float = 1.0
    defocus: float = 0.0
    halo: float = 0.1
    background: float = 0.01
    haze: float = 0.2
    gradient: float = 0.1
    vignetting: float = 0.15
    noise: bool = True
    photons: float = 300.0
    read_noise: float = 2.0
    offset: float = 0.0015
    gamma: float = 1.0
    dtype: str = "uint16"


def random_appearance(rng: np.random.Generator | int | None = None) -> Appearance:
    """Draw an appearance over the whole variety: widefield or confocal, sparse to confluent, dim to saturated.

    40% confocal (no halo, flat, often a rim, stronger texture), 60% widefield (dome, halo 0.05-0.3).
    Density log-uniform 0.04-0.5, or 0.5-0.7 (confluent) in 15% of draws; background log-uniform
    0.001-0.05 with nuclei 1.6-41x as bright; saturation in 20% of draws; mitosis-heavy (up to 30%)
    in 10%; defocus in 15%; a gamma of 0.6-1.6 in 40%. The ranges of every knob are in the code.

    Parameters
    ----------
    rng : Generator or int or None
        Random generator or seed.

    Returns
    -------
    Appearance

    Examples
    --------
    >>> a = random_appearance(1)
    >>> a == random_appearance(1), 0 <= a.density <= 0.7
    (True, True)
    """
    rng = np.random.default_rng(rng)
    u = rng.random(40).tolist()  # a fixed number of draws, so that one knob's range does not shift the others
    confocal = u[0] < 0.4
    background = 0.001 * 50 ** u[36]  # log-uniform 0.001-0.05
    contrast = 0.6 * (40 / 0.6) ** u[37]  # nuclei 1.6x to 41x the background
    return Appearance(
        size_sigma=0.1 + 0.2 * u[1],
        elongation=0.05 * 14 ** u[2],  # log-uniform 0.05-0.7
        irregularity=0.0 if u[3] < 0.3 else 0.1 * u[4],
        kidney_fraction=0.0 if u[5] < 0.5 else 0.3 * u[6],
        mitotic_fraction=0.3 * u[8] if u[7] < 0.1 else 0.06 * u[8],
        mitotic_pair_fraction=0.04 * u[9],
        apoptotic_fraction=0.0 if u[10] < 0.4 else 0.05 * u[11],
        density=0.5 + 0.2 * u[13] if u[12] < 0.15 else 0.04 * 12.5 ** u[13],
        clump_fraction=0.8 * u[14],
        brightness=min(background * contrast, 0.8),
        brightness_sigma=0.1 + 0.4 * u[15],
        saturated_fraction=0.0 if u[16] < 0.8 else 0.01 + 0.14 * u[17],
        dome=0.3 * u[18] if confocal else 0.3 + 0.6 * u[18],
        rim=(0.8 * u[20] if u[19] < 0.5 else 0.0) if confocal else 0.0,
        texture=0.15 + 0.35 * u[21] if confocal else 0.05 + 0.25 * u[21],
        texture_scale=0.04 + 0.08 * u[22],
        nucleoli=3.0 * u[23],
        psf_sigma=0.5 * 6 ** u[24],
        defocus=0.05 + 0.2 * u[26] if u[25] < 0.15 else 0.0,
        halo=0.0 if confocal else 0.05 + 0.25 * u[27],
        background=background,
        haze=0.3 * u[28],
        gradient=0.4 * u[29],
        vignetting=0.5 * u[30],
        photons=25 * 120 ** u[31],
        read_noise=0.5 + 9.5 * u[32],
        offset=0.01 * u[33],
        gamma=1.0 if u[34] < 0.6 else 0.6 + u[35],
    )


def _gaussian_transfer(shape: tuple[int, int], sigmas: list[float], weights: list[float]) -> np.ndarray:
    """Real-FFT transfer function of a mixture of Gaussians."""
    fy = sfft.fftfreq(shape[0])[:, None]
    fx = sfft.rfftfreq(shape[1])[None, :]
    f2 = (fy**2 + fx**2).astype(np.float32)
    return sum(w * np.exp(np.float32(-2 * np.pi**2 * s**2) * f2) for s, w in zip(sigmas, weights))


def _blur(image: np.ndarray, sigmas: list[float], weights: list[float]) -> np.ndarray:
    """Convolve with a mixture of Gaussians (FFT, mirrored borders)."""
    pad = int(min(np.ceil(3 * max(sigmas)), min(image.shape) - 1))
    padded = np.pad(image, pad, mode="reflect")
    size = (sfft.next_fast_len(padded.shape[0], real=True), sfft.next_fast_len(padded.shape[1], real=True))
    spectrum = sfft.rfft2(padded, s=size) * _gaussian_transfer(size, sigmas, weights)
    out = sfft.irfft2(spectrum, s=size)
    return out[pad : pad + image.shape[0], pad : pad + image.shape[1]]


def _texture_field(shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random field with unit standard deviation: fine grains, chromatin domains, coarser patches."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    transfer = _gaussian_transfer(shape, [scale / 2.5, scale, 3 * scale], [0.3, 0.4, 0.3])
    field = sfft.irfft2(sfft.rfft2(noise) * transfer, s=shape)
    return (field - field.mean()) / max(float(field.std()), 1e-12)


def _haze(shape: tuple[int, int], diameter: float, rng: np.random.Generator, modes: int = 8) -> np.ndarray:
    """Smooth random field with unit standard deviation: a few random waves across the image.

    Their periods are at least 4 nucleus diameters, so that the haze does not look like out-of-focus nuclei.
    """
    y = np.arange(shape[0])[:, None] / max(shape)
    x = np.arange(shape[1])[:, None] / max(shape)
    most = max(0.3, min(1.5, max(shape) / (4 * diameter)))
    cycles = rng.uniform(0.3, 1.0, modes) * most * 2 * np.pi
    direction = rng.uniform(0, 2 * np.pi, modes)
    phase = rng.uniform(0, 2 * np.pi, modes)
    # sum_k cos(ky_k y + kx_k x + p_k) = sum_k cos(ky_k y) cos(kx_k x + p_k) - sin(ky_k y) sin(kx_k x + p_k)
    wy = y * (cycles * np.sin(direction))
    wx = x * (cycles * np.cos(direction)) + phase
    field = np.hstack([np.cos(wy), -np.sin(wy)]) @ np.hstack([np.cos(wx), np.sin(wx)]).T
    return (field / np.sqrt(modes / 2)).astype(np.float32)


def _nucleoli(labels: np.ndarray, obj: Objects, index: np.ndarray, cy, cx, mean: float, rng) -> np.ndarray:
    """Multiplicative map with dark round spots inside the interphase nuclei (Poisson number per nucleus)."""
    m = len(index)
    count = rng.poisson(mean, m) * (obj.kind[index] == NORMAL)
    ident = np.repeat(np.arange(1, m + 1), count)
    i = index[ident - 1]
    s = len(i)
    radius = np.sqrt(obj.a[i] * obj.b[i]) * rng.uniform(0.12, 0.25, s)
    depth = rng.uniform(0.25, 0.6, s)
    where, phi = 0.5 * np.sqrt(rng.random(s)), rng.uniform(0, 2 * np.pi, s)
    u, v = where * obj.a[i] * np.cos(phi), where * obj.b[i] * np.sin(phi)
    y = cy[i] + u * np.sin(obj.angle[i]) + v * np.cos(obj.angle[i])
    x = cx[i] + u * np.cos(obj.angle[i]) - v * np.sin(obj.angle[i])
    factor = np.ones(labels.size, np.float32)
    visible = np.flatnonzero(radius >= 1)
    for k, rows, cols in pixel_boxes(y[visible], x[visible], 2 * radius[visible] + 1):
        k = visible[k]
        d2 = (rows - y[k, None])[:, :, None] ** 2 + (cols - x[k, None])[:, None, :] ** 2
        spot = 1 - depth[k, None, None] * np.exp(-((d2 / radius[k, None, None] ** 2) ** 2))
        inside = in_image(labels.shape, rows, cols)
        n, r, c = np.nonzero(inside)
        pix = rows[n, r] * labels.shape[1] + cols[n, c]
        mine = labels.ravel()[pix] == ident[k][n]
        np.multiply.at(factor, pix[mine], spot[inside][mine].astype(np.float32))
    return factor.reshape(labels.shape)


def nuclei_image(
    shape: tuple[int, int] = (256, 256),
    diameter: float = 20.0,
    appearance: Appearance | None = None,
    rng: np.random.Generator | int | None = None,
    return_kinds: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic fluorescence image of nuclei and its ground truth labels.

    Parameters
    ----------
    shape : tuple
        Image shape (y, x).
    diameter : float
        Typical (median) equivalent diameter of a nucleus in pixels,
        2 * sqrt(area / pi); 6 to 120 work. Nuclei cut by the border and
        nuclei pressed against others are smaller.
    appearance : Appearance or None
        All the knobs; None draws :func:`random_appearance` from ``rng``.
    rng : Generator or int or None
        Random generator or seed; the same seed and appearance give the same image.
    return_kinds : bool
        Also return each object's kind.

    Returns
    -------
    image : numpy.ndarray
        ``appearance.dtype`` (uint16 by default).
    labels : numpy.ndarray of uint32
        0 background, 1..n one id per object, every id present.
    kinds : numpy.ndarray of int64, only with ``return_kinds``
        The kind of object ``i + 1`` at ``i``: ``NORMAL``, ``MITOTIC``, ``PAIR`` (one of an anaphase /
        telophase pair) or ``APOPTOTIC`` (one fragment) of :mod:`batchlib.synthetic_geometry`.

    Examples
    --------
    >>> image, labels = nuclei_image((128, 128), diameter=16, rng=0)
    >>> image.dtype.name, labels.dtype.name, image.shape
    ('uint16', 'uint32', (128, 128))
    >>> ids = np.unique(labels)
    >>> bool(np.array_equal(ids, np.arange(len(ids))))
    True
    >>> image, labels = nuclei_image((64, 64), 16, Appearance(n_nuclei=0), rng=0)
    >>> int(labels.max())
    0
    """
    rng = np.random.default_rng(rng)
    app = random_appearance(rng) if appearance is None else appearance
    if app.dtype not in _DTYPE_MAX:
        raise ValueError(f"dtype must be one of {sorted(_DTYPE_MAX)}, not {app.dtype!r}")
    shape = (int(shape[0]), int(shape[1]))
    # Separate streams: changing one knob (say the noise) leaves the rest of the image as it was.
    geometry_rng, object_rng, field_rng, noise_rng = (np.random.default_rng(s) for s in rng.integers(2**63, size=4))

    owner, rho, obj, cy, cx = place_objects(shape, diameter, app, geometry_rng)
    labels, index = clean_labels(owner)
    m = len(index)

    scale = np.exp(app.brightness_sigma * object_rng.standard_normal(m))
    saturated_level = object_rng.uniform(1.2, 2.0)
    bright = np.zeros(m + 1, np.float32)
    bright[1:] = app.brightness * scale * obj.bright[index]
    # Saturation as in an over-exposed image: the exposure rises until the brightest objects clip, but the
    # background stays below a quarter of the full scale (a dim, low-contrast image cannot saturate its nuclei only).
    exposure = 1.0
    if app.saturated_fraction > 0 and m:
        exposure = saturated_level / float(np.quantile(bright[1:], 1 - min(app.saturated_fraction, 1)))
        exposure = max(1.0, min(exposure, 0.25 / max(app.background, 1e-9)))
    bright *= np.float32(exposure)
    texture = np.zeros(m + 1, np.float32)
    texture[1:] = app.texture * obj.texture[index]
    radius = np.ones(m + 1, np.float32)
    radius[1:] = np.sqrt(obj.a * obj.b)[index]

    inside = labels > 0
    r = np.where(inside, rho, 1).astype(np.float32)
    signal = np.float32(1 - app.dome) + np.float32(app.dome) * np.sqrt(np.clip(1 - r * r, 0, 1))
    if app.rim > 0:
        rim_width = np.maximum(0.8, 0.12 * radius[labels])
        signal += np.float32(app.rim) * np.exp(-(1 - r) * radius[labels] / rim_width)
    field = _texture_field(shape, max(app.texture_scale * diameter, 0.7), field_rng)
    if app.texture > 0:
        t = texture[labels]
        signal *= np.exp(t * field - t * t / 2)
    nucleoli = _nucleoli(labels, obj, index, cy, cx, max(app.nucleoli, 0), object_rng)
    signal *= nucleoli * bright[labels]
    # Touching nuclei: a dip along the contact (their surfaces curve away from each other).
    contact = np.zeros(shape, bool)
    down = (labels[1:] != labels[:-1]) & (labels[1:] > 0) & (labels[:-1] > 0)
    right = (labels[:, 1:] != labels[:, :-1]) & (labels[:, 1:] > 0) & (labels[:, :-1] > 0)
    contact[1:] |= down
    contact[:-1] |= down
    contact[:, 1:] |= right
    contact[:, :-1] |= right
    if contact.any():
        width = max(0.7, 0.03 * diameter)
        # Normalized so that the middle of a straight contact (a line two pixels wide) dips fully.
        dip = ndi.gaussian_filter(contact.astype(np.float32), width) / np.float32(math.erf(1 / (np.sqrt(2) * width)))
        signal *= 1 - np.float32(0.4) * np.clip(dip, 0, 1)

    core = float(np.hypot(min(app.psf_sigma, 0.2 * diameter + 0.5), app.defocus * diameter))
    sigmas, weights = [core], [1 - app.halo]
    if app.halo > 0:
        sigmas.append(max(3 * core, 0.5 * diameter))
        weights.append(app.halo)
    image = _blur(signal, sigmas, weights) if m else signal

    yy = np.linspace(-1, 1, shape[0], dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, shape[1], dtype=np.float32)[None, :]
    phi = field_rng.uniform(0, 2 * np.pi)
    tilt = 1 + app.gradient / 2 * (yy * np.sin(phi) + xx * np.cos(phi))
    illumination = np.clip(tilt * (1 - app.vignetting * (yy**2 + xx**2) / 2), 0.05, None)
    background = exposure * app.background * np.clip(1 + app.haze * _haze(shape, diameter, field_rng), 0.2, None)
    image = ((image + background) * illumination).astype(np.float32)

    if app.noise:
        per_unit = app.photons / max(exposure * app.brightness, 1e-9)  # photons per full-scale unit
        image = noise_rng.poisson(np.clip(image, 0, None) * per_unit).astype(np.float32) / np.float32(per_unit)
        image += noise_rng.standard_normal(shape, dtype=np.float32) * np.float32(app.read_noise / per_unit)
    image += np.float32(app.offset)
    if app.gamma != 1:
        ref = np.float32(exposure * (app.background + app.brightness))
        image = ref * (np.clip(image, 0, None) / ref) ** np.float32(app.gamma)
    image = np.clip(image, 0, 1)
    image = (
        image.astype(np.float32) if app.dtype == "float32" else np.rint(image * _DTYPE_MAX[app.dtype]).astype(app.dtype)
    )
    return (image, labels, obj.kind[index].astype(np.int64)) if return_kinds else (image, labels)
