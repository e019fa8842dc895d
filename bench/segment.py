"""Overhead of the StarDist segment job over a bare loop of ``predict_instances``.

Both use the shipped model, loaded once, on the same N synthetic images; the
job also reads each image from its container, writes the label pyramid and
keeps the bookkeeping.

Run:  python bench/segment.py [--images 8] [--size 512]
Target: the job takes at most 15% longer than the bare loop.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("LOGLEVEL", "WARNING")

from batchlib import run_workflow
from batchlib.io import open_file, write_image
from batchlib.jobs.segmentation import SegmentNucleiStarDist, auto_tiles, load_stardist, normalize
from batchlib.synthetic import synthetic_site


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="batchlib-bench-segment-")
    images = []
    for i in range(args.images):
        channels, _, _ = synthetic_site((args.size, args.size), n_nuclei=args.size // 8, seed=i)
        images.append(channels["nuclei"])
        with open_file(os.path.join(folder, f"WellC01_PointC01_{i:04d}_ChannelDAPI_Seq{i:04d}.h5"), "w") as f:
            write_image(f, "nuclei", channels["nuclei"])

    model = load_stardist()
    model.predict_instances(normalize(images[0]))  # warm-up, as the job's first file is not timed apart
    start = time.perf_counter()
    for image in images:
        model.predict_instances(normalize(image), n_tiles=auto_tiles(image.shape, 1024), show_tile_progress=False)
    bare = time.perf_counter() - start

    job = SegmentNucleiStarDist()
    job.worker_resource("stardist", job.load_model)  # loaded once, like the bare loop's model
    start = time.perf_counter()
    run_workflow("bench", folder, [job], progress=False)
    ours = time.perf_counter() - start
    print(
        f"{args.images} images of {args.size}x{args.size}: bare predict_instances loop {bare:.2f} s, "
        f"segment job {ours:.2f} s: overhead {100 * (ours / bare - 1):.1f}% (target <= 15%)"
    )
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
