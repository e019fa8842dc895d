"""Overhead of the StarDist segment job over a bare loop of ``predict_instances``.

Both use the shipped model, loaded once, on the same N synthetic images, at
the same scale: the bare loop is given the factor the job uses (the model's
nucleus diameter over the image's, computed before timing) and prepares its
input as the job does. The job also estimates each image's nucleus diameter, reads
each image from its container, writes the label pyramid and keeps the
bookkeeping.

Run:  python bench/segment.py [--images 32] [--size 512] [--repeat 5] [--model FOLDER]
Target: the job takes at most 15% longer than the bare loop (median over the pairs of a bare
loop and the job run right after it).
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
from batchlib.jobs.segmentation import SegmentNucleiStarDist
from batchlib.jobs.stardist_model import auto_tiles, load_stardist, prepare_for_model, recorded_diameter
from batchlib.nucleus_size import estimate_diameter, rescale_factor
from batchlib.synthetic import synthetic_site


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=5, help="pairs of runs (bare loop, then the job)")
    parser.add_argument("--model", help="StarDist model folder (default: the shipped model)")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="batchlib-bench-segment-")
    template = os.path.join(work, "template")
    os.makedirs(template)
    images = []
    for i in range(args.images):
        channels, _, _ = synthetic_site((args.size, args.size), n_nuclei=args.size // 8, seed=i)
        images.append(channels["nuclei"])
        with open_file(os.path.join(template, f"WellC01_PointC01_{i:04d}_ChannelDAPI_Seq{i:04d}.h5"), "w") as f:
            write_image(f, "nuclei", channels["nuclei"])

    model = load_stardist(args.model)
    start = time.perf_counter()
    diameters = [estimate_diameter(image) for image in images]
    estimate_ms = 1000 * (time.perf_counter() - start) / len(images)
    scales = [rescale_factor(diameter, recorded_diameter(args.model)) for diameter in diameters]
    model.predict_instances(prepare_for_model(images[0], 1))  # warm-up: the first prediction builds TensorFlow's graph
    job = SegmentNucleiStarDist(model=args.model)
    job.worker_resource("stardist", job.load_model).predict_instances(prepare_for_model(images[0], 1))  # the same
    bare, ours = [], []

    def bare_loop() -> None:
        start = time.perf_counter()
        for image, scale, diameter in zip(images, scales, diameters):
            model.predict_instances(
                prepare_for_model(image, scale, diameter),  # normalized (smoothed before shrinking), as the job does
                scale=None if scale == 1 else scale,
                n_tiles=auto_tiles(tuple(int(-(-n * scale // 1)) for n in image.shape), 1024),
                show_tile_progress=False,
            )
        bare.append(time.perf_counter() - start)

    def the_job() -> None:
        folder = os.path.join(work, f"run{len(ours)}")
        shutil.copytree(template, folder)
        start = time.perf_counter()
        run_workflow("bench", folder, [job], progress=False)
        ours.append(time.perf_counter() - start)

    for repeat in range(args.repeat):  # the order alternates, so that neither always runs first
        for run in (bare_loop, the_job) if repeat % 2 == 0 else (the_job, bare_loop):
            run()
    per_image = 1000 * min(bare) / args.images
    print(f"model {args.model or 'shipped'}: {per_image:.1f} ms per image in the bare loop")
    diameter = recorded_diameter(args.model)
    print(f"nucleus diameter: model {diameter} px, images scaled by {min(scales):.2f}-{max(scales):.2f}")
    print(f"nucleus-size estimate alone: {estimate_ms:.1f} ms per image (the job runs it in its I/O thread)")
    # Each job run is compared with the bare loop run just before it: the load of a shared VM drifts over
    # minutes, so the best of each, taken at different moments, can compare a quiet minute with a busy one.
    paired = sorted(job / loop for job, loop in zip(ours, bare))
    print(f"job / bare loop, run by run: {', '.join(f'{ratio:.3f}' for ratio in paired)}")
    print(
        f"{args.images} images of {args.size}x{args.size}, best of {args.repeat}: "
        f"bare predict_instances loop {min(bare):.2f} s, segment job {min(ours):.2f} s; "
        f"overhead, median of the {args.repeat} pairs: {100 * (paired[len(paired) // 2] - 1):.1f}% (target <= 15%)"
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
