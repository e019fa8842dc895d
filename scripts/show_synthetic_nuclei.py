"""Write a PNG montage of synthetic nuclei images to look at.

    python scripts/show_synthetic_nuclei.py montage.png [--seed 0] [--grid 4] [--size 256] [--no-outlines]

Each tile is one :func:`batchlib.synthetic_nuclei.nuclei_image` with a random
appearance, at diameters spread from 8 to 100 pixels (written in the tile's
corner), normalized to its 1st / 99.8th percentile as the segmentation job
does, with the label outlines in colour unless ``--no-outlines``.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, ImageDraw
from skimage.segmentation import find_boundaries

from batchlib.synthetic_nuclei import nuclei_image, random_appearance


def tile(size: int, diameter: float, rng: np.random.Generator, outlines: bool) -> np.ndarray:
    """One RGB tile (uint8) of a random synthetic image."""
    appearance = random_appearance(rng)
    image, labels = nuclei_image((size, size), diameter, appearance, rng)
    image = image.astype(np.float32)
    low, high = np.percentile(image, [1, 99.8])
    gray = np.clip((image - low) / max(high - low, 1e-6), 0, 1)
    rgb = np.repeat((gray * 255).astype(np.uint8)[..., None], 3, axis=-1)
    if outlines:
        edges = find_boundaries(labels, mode="inner")
        rgb[edges] = (rgb[edges] * 0.4 + np.array([255, 60, 200]) * 0.6).astype(np.uint8)
    picture = Image.fromarray(rgb)
    kind = "confocal" if appearance.halo == 0 else "widefield"
    ImageDraw.Draw(picture).text((3, 2), f"d={diameter:.0f} {kind} n={labels.max()}", fill=(255, 255, 0))
    return np.asarray(picture)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="PNG file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", type=int, default=4, help="tiles per row and column")
    parser.add_argument("--size", type=int, default=256, help="tile size in pixels")
    parser.add_argument("--no-outlines", dest="outlines", action="store_false")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    n = args.grid * args.grid
    diameters = np.geomspace(8, 100, n)
    gap = 4
    side = args.grid * args.size + (args.grid - 1) * gap
    montage = np.full((side, side, 3), 40, np.uint8)
    for i, diameter in enumerate(diameters):
        y, x = divmod(i, args.grid)
        y0, x0 = y * (args.size + gap), x * (args.size + gap)
        montage[y0 : y0 + args.size, x0 : x0 + args.size] = tile(args.size, diameter, rng, args.outlines)
    Image.fromarray(montage).save(args.output)
    print(f"wrote {args.output}: {n} tiles, diameters {diameters[0]:.0f}-{diameters[-1]:.0f} px")


if __name__ == "__main__":
    main()
