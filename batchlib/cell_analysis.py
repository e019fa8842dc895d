"""The cell-analysis workflow: its options, its jobs, and its entry point.

``workflows/cell_analysis_workflow.py`` and ``batchlib demo`` both call
:func:`cell_analysis_main`; :func:`cell_analysis_jobs` builds the job list from
parsed options, so other scripts can reuse it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .config import at_least, number_in, workflow_parser
from .errors import ConfigError
from .log import get_logger

#: Steps of the workflow, in order.
STEPS = (
    "import",
    "segment_nuclei",
    "segment_cells",
    "illumination",
    "measure",
    "crop",
    "aggregate",
    "export",
    "normalize",
    "qc",
    "export_omezarr",
    "upload",
)


def parse_channels(text: str) -> dict[str, str | None]:
    """``"DAPI:nuclei,WF_GFP:cells,TRITC:-"`` -> ``{"DAPI": "nuclei", "WF_GFP": "cells", "TRITC": None}``.

    Examples
    --------
    >>> parse_channels("DAPI:nuclei, TRITC:marker, GFP:-")
    {'DAPI': 'nuclei', 'TRITC': 'marker', 'GFP': None}
    """
    mapping: dict[str, str | None] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        raw, sep, name = part.partition(":")
        if not sep or not raw:
            raise ConfigError(f"--channels: expected raw:name pairs separated by commas, got {part!r}")
        mapping[raw.strip()] = None if name.strip() in ("", "-") else name.strip()
    return mapping


def image_shape(text: str) -> tuple[int, int, int]:
    """``"3,2048,2048"`` -> ``(3, 2048, 2048)``: the ``--image-shape`` option (channels, y, x).

    Examples
    --------
    >>> image_shape("3, 512,512")
    (3, 512, 512)
    """
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected channels,y,x as three positive integers, got {text!r}")
    return shape


def parse_steps(steps: str | None, skip: str | None) -> list[str]:
    """The steps to run from ``--steps`` and ``--skip`` (comma-separated).

    Examples
    --------
    >>> parse_steps(None, "export_omezarr,export,normalize,crop,qc,upload")
    ['import', 'segment_nuclei', 'segment_cells', 'illumination', 'measure', 'aggregate']
    """
    chosen = [s.strip() for s in steps.split(",") if s.strip()] if steps else list(STEPS)
    skipped = {s.strip() for s in skip.split(",") if s.strip()} if skip else set()
    unknown = [s for s in [*chosen, *skipped] if s not in STEPS]
    if unknown:
        raise ConfigError(f"--steps/--skip: unknown step(s) {', '.join(unknown)}; steps are {', '.join(STEPS)}")
    return [s for s in STEPS if s in chosen and s not in skipped]


def cell_analysis_parser(default_config_files: list[str] | None = None):
    """The options of the cell-analysis workflow (on top of the common ones)."""
    parser = workflow_parser(
        "Cell analysis of an HTS plate: import, segment, measure, aggregate, export.", default_config_files
    )
    parser.add(
        "--input-pattern",
        default=None,
        help="glob of the raw images (default: *.tiff; *.tif* for imagexpress, *.ome.tif* for ome-tiff)",
    )
    parser.add(
        "--scheme",
        default="batchlib",
        help="what the raw folder is: harmony (an Opera Phenix / Operetta CLS export with Index.xml or "
        "Index.idx.xml), imagexpress (file names, and the .HTD if there is one), auto (detect it and log what was "
        "found), or a filename scheme: batchlib, operetta, or a regular expression with named groups well "
        "(or row, column), site, channel",
    )
    parser.add(
        "--one-file-per-channel",
        action="store_true",
        help="raw files hold one channel each (Operetta, ImageXpress): a site's files are imported into one "
        "container; channel names are the scheme's channel group, e.g. --channels 1:nuclei,2:cells,3:marker",
    )
    parser.add(
        "--channels",
        default="DAPI:nuclei,WF_GFP:cells,TRITC:marker",
        help="raw channel -> name pairs, comma-separated; a name of - drops that channel",
    )
    parser.add(
        "--image-shape",
        type=image_shape,
        default=None,
        help="the raw images' shape as channels,y,x (e.g. 3,2048,2048); files of another shape are invalid "
        "(default: the shape most of the plate's files have)",
    )
    parser.add(
        "--image-dtype",
        default=None,
        help="the raw images' pixel type, e.g. uint16 (default: the one most of the plate's files have)",
    )
    parser.add(
        "--max-image-gib",
        type=number_in(1e-6, 1e6),
        default=4.0,
        help="a raw file whose header claims a larger image is invalid, never read (GiB)",
    )
    parser.add("--nuclei-channel", default="nuclei", help="channel the nuclei are segmented on")
    parser.add("--cell-channel", default="cells", help="channel the cells are grown on (membrane, serum)")
    parser.add(
        "--container-ext", default=".h5", choices=[".h5", ".n5", ".zarr"], help="format of the per-image containers"
    )
    parser.add(
        "--nuclei-method",
        default="stardist",
        choices=["stardist", "threshold"],
        help="StarDist (a model) or a classical threshold + watershed",
    )
    parser.add(
        "--model",
        default=None,
        help="StarDist model: a folder, or a registered name (needs internet) "
        "(default: the model shipped with batchlib)",
    )
    parser.add(
        "--prob-thresh",
        type=number_in(0, 1),
        default=None,
        help="StarDist probability threshold (default: the model's)",
    )
    parser.add(
        "--nms-thresh", type=number_in(0, 1), default=None, help="StarDist overlap threshold (default: the model's)"
    )
    parser.add(
        "--nucleus-diameter",
        type=number_in(1, 1000),
        default=None,
        help="typical nucleus diameter in pixels; images are rescaled so their nuclei have the size the model "
        "was trained for (default: estimated per image)",
    )
    parser.add(
        "--nucleus-diameter-um",
        type=number_in(0.1, 1000),
        default=None,
        help="typical nucleus diameter in micrometres (needs --pixel-size-um or the pixel size in the containers)",
    )
    parser.add("--pixel-size-um", type=number_in(1e-3, 1e3), default=None, help="micrometres per pixel")
    parser.add(
        "--model-diameter",
        type=number_in(1, 1000),
        default=None,
        help="nucleus diameter (pixels) a --model works best at, if its folder does not record it "
        "(default: the model's batchlib.json)",
    )
    parser.add("--gpu", action="store_true", help="let StarDist use a GPU (default: CPU only)")
    parser.add(
        "--illumination-correction",
        default="none",
        choices=["none", "plate"],
        help="plate: estimate a flat field per channel from the plate's images (the illumination step) and divide "
        "every image by it before measuring; none: measure the images as they are",
    )
    parser.add(
        "--platemap",
        default=None,
        help="the plate's plate map (TSV/CSV: well_position plus metadata columns, the profiling handbook's "
        "platemap.txt), or a batch's barcode_platemap.csv (Assay_Plate_Barcode = the plate folder's name, "
        "Plate_Map_Name -> platemap/<name>.txt beside it); its columns become Metadata_* columns of the image and "
        "well tables and the profiles",
    )
    parser.add(
        "--normalize-method",
        default="standardize",
        choices=["standardize", "robustize", "mad_robustize"],
        help="how the normalize step scales each feature (pycytominer's methods)",
    )
    parser.add(
        "--normalize-samples",
        default="all",
        help="reference rows of the normalize step: all, or a query on the metadata columns such as "
        "\"Metadata_control_type == 'negcon'\"",
    )
    parser.add("--min-cells", type=at_least(0), default=10, help="images with fewer cells are flagged as outliers")
    parser.add(
        "--score-feature",
        default=None,
        help="feature whose median is the tables' score column (default: Cells_Intensity_MeanIntensity_<last channel>)",
    )
    parser.add("--crop-size", type=at_least(1), default=64, help="width and height of the single-cell crops (pixels)")
    parser.add(
        "--crop-format",
        default="store",
        choices=["store", "png"],
        help="single-cell crops as arrays, one <image>.crops.hdf5 per image indexed by <plate>_crops.parquet "
        "(store), or a PNG per cell and channel in <image>.crops/ (png)",
    )
    parser.add(
        "--crop-compression",
        default="none",
        choices=["none", "gzip"],
        help="compression of the crop store: none, or gzip (level 1: about half the size, slower to write)",
    )
    parser.add("--qc-features", default="n_cells,score", help="well-table columns drawn as plate heatmaps")
    parser.add(
        "--omezarr",
        action="store_true",
        help="also write the plate as OME-Zarr (<plate>.ome.zarr, for napari); a plate that has one keeps it current",
    )
    parser.add("--ngff-version", default="0.4", choices=["0.4", "0.5"], help="OME-Zarr version of the export")
    parser.add(
        "--upload-to",
        default=None,
        help="s3://bucket/prefix: the upload step publishes the results to <prefix>/<plate>/ (it runs only with "
        "this option). Credentials come from the standard AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
        "AWS_PROFILE, instance role), never from options or config files",
    )
    parser.add("--endpoint-url", default=None, help="S3-compatible server for --upload-to (default: AWS)")
    parser.add(
        "--upload-kinds",
        default="containers,plate_table,profiles,crops,qc,omezarr",
        help="comma-separated outputs to upload: containers, plate_table, profiles, crops, qc, omezarr, other",
    )
    parser.add("--part-size-mb", type=at_least(5), default=16, help="part size of multipart uploads in MiB, at least 5")
    parser.add("--upload-concurrency", type=at_least(1), default=8, help="files and parts uploaded at once")
    parser.add("--steps", default=None, help=f"comma-separated steps to run, of {', '.join(STEPS)} (default: all)")
    parser.add("--skip", default=None, help="comma-separated steps not to run")
    return parser


def cell_analysis_jobs(args) -> list:
    """The jobs of the workflow for parsed options ``args``."""
    from .jobs.aggregate import AggregateTables
    from .jobs.crops import CropCells, IndexCrops
    from .jobs.export import ExportProfiles
    from .jobs.illumination import ILLUMINATION_FILE, EstimateIllumination
    from .jobs.importer import ImportImages
    from .jobs.measure import MeasureObjects
    from .jobs.normalize import NormalizeProfiles
    from .jobs.omezarr import OmeZarrExport
    from .jobs.qc import QualityControl
    from .jobs.segmentation import SegmentCells, SegmentNucleiStarDist, SegmentNucleiThreshold
    from .jobs.upload import UploadJob
    from .readers import METADATA_FORMATS

    channels = parse_channels(args.channels)
    names = [name for name in channels.values() if name]
    if args.nuclei_channel not in names:
        raise ConfigError(
            f"--nuclei-channel {args.nuclei_channel!r} is not among the imported channels {', '.join(names)}"
        )
    # Without a cell channel the plate is measured by its nuclei (cell counting, DNA content).
    nuclei_only = args.cell_channel not in names
    cell_key = None if nuclei_only else "cell_segmentation"
    if nuclei_only:
        get_logger("CellAnalysisWorkflow").info(
            "no cell channel (--cell-channel %r is not among the imported channels %s): nuclei only; "
            "segment_cells is left out, and measure, crops, aggregate, export, QC and OME-Zarr use the nuclei",
            args.cell_channel,
            ", ".join(names),
        )
    pattern = f"*{args.container_ext}"
    raw_scheme, one_file_per_channel = raw_format(args)
    # Containers of per-channel raw files are named as the plate viewer expects.
    scheme = "viewer" if one_file_per_channel else raw_scheme
    illumination = ILLUMINATION_FILE if args.illumination_correction == "plate" else None
    compartment = "Nuclei" if nuclei_only else "Cells"
    score = args.score_feature or f"{compartment}_Intensity_MeanIntensity_{names[-1]}"
    size = {
        "nucleus_diameter": args.nucleus_diameter,
        "nucleus_diameter_um": args.nucleus_diameter_um,
        "pixel_size_um": args.pixel_size_um,
    }
    jobs = {
        "import": lambda: ImportImages(
            channels,
            input_pattern=args.input_pattern,
            output_ext=args.container_ext,
            scheme=raw_scheme,
            one_file_per_channel=one_file_per_channel,
            image_shape=args.image_shape,
            dtype=args.image_dtype,
            max_image_gib=args.max_image_gib,
            input_folder=args.input_folder,
        ),
        "segment_nuclei": lambda: (
            SegmentNucleiStarDist(
                args.nuclei_channel,
                model=args.model,
                prob_thresh=args.prob_thresh,
                nms_thresh=args.nms_thresh,
                model_diameter=args.model_diameter,
                gpu=args.gpu,
                input_pattern=pattern,
                **size,
            )
            if args.nuclei_method == "stardist"
            else SegmentNucleiThreshold(args.nuclei_channel, input_pattern=pattern, **size)
        ),
        "segment_cells": lambda: SegmentCells(cell_key=args.cell_channel, input_pattern=pattern),
        "illumination": lambda: EstimateIllumination(names, input_pattern=pattern),
        "measure": lambda: MeasureObjects(names, cell_key=cell_key, input_pattern=pattern, illumination=illumination),
        "aggregate": lambda: AggregateTables(
            cell_key=cell_key,
            min_cells=args.min_cells,
            score_feature=score,
            focus_channel=args.nuclei_channel,
            scheme=scheme,
            raw_metadata=(args.input_folder, raw_scheme) if raw_scheme in METADATA_FORMATS else None,
            platemap=args.platemap,
            input_pattern=pattern,
        ),
        "crop": lambda: [
            CropCells(
                names,
                cell_key=cell_key or "nucleus_segmentation",
                size=args.crop_size,
                scheme=scheme,
                format=args.crop_format,
                compression=args.crop_compression,
                input_pattern=pattern,
            ),
            *([IndexCrops()] if args.crop_format == "store" else []),
        ],
        "export": lambda: ExportProfiles(
            cell_key=cell_key, scheme=scheme, platemap=args.platemap, input_pattern=pattern
        ),
        "normalize": lambda: NormalizeProfiles(args.normalize_method, args.normalize_samples),
        "qc": lambda: QualityControl(
            [f.strip() for f in args.qc_features.split(",") if f.strip()],
            channel=args.nuclei_channel,
            cell_key=cell_key,
            input_pattern=pattern,
        ),
        "export_omezarr": lambda: OmeZarrExport(
            names,
            ["nucleus_segmentation", *([cell_key] if cell_key else [])],
            ngff_version=args.ngff_version,
            scheme=scheme,
            input_pattern=pattern,
        ),
        "upload": lambda: UploadJob(
            args.upload_to,
            endpoint_url=args.endpoint_url,
            kinds=[k.strip() for k in args.upload_kinds.split(",") if k.strip()],
            part_size_mb=args.part_size_mb,
            concurrency=args.upload_concurrency,
        ),
    }
    steps = parse_steps(args.steps, args.skip)
    if nuclei_only and "segment_cells" in steps:
        steps.remove("segment_cells")
    if "illumination" in steps and args.illumination_correction == "none":
        steps.remove("illumination")  # the default step list corrects only when told to
    if "normalize" in steps and not args.platemap and not (args.steps and "normalize" in args.steps.split(",")):
        steps.remove("normalize")  # the default step list normalizes plates with a plate map
    if "export_omezarr" in steps and not wants_omezarr(args):
        steps.remove("export_omezarr")  # every pixel written a second time: only when asked for (or already there)
    if "upload" in steps and not args.upload_to:
        if args.steps and "upload" in args.steps.split(","):
            raise ConfigError("--steps upload needs --upload-to s3://bucket/prefix")
        steps.remove("upload")  # the default step list uploads only when told where to
    made = [jobs[step]() for step in steps]
    return [job for step_jobs in made for job in (step_jobs if isinstance(step_jobs, list) else [step_jobs])]


def wants_omezarr(args) -> bool:
    """Whether the OME-Zarr export runs: ``--omezarr``, named in ``--steps``, or the plate already has one.

    A plate exported before stays current rather than silently going stale.
    """
    named = bool(args.steps) and "export_omezarr" in args.steps.split(",")
    folder = os.path.abspath(args.folder) if args.folder else None
    existing = bool(folder) and os.path.isdir(os.path.join(folder, f"{os.path.basename(folder)}.ome.zarr"))
    return bool(args.omezarr) or named or existing


def raw_format(args) -> tuple[str, bool]:
    """The raw folder's scheme (``--scheme auto`` detected) and whether its files hold one channel each.

    Harmony exports, OME-TIFF plates and ImageXpress plates with an ``.HTD``
    are imported per field (by their metadata); otherwise
    ``--one-file-per-channel`` says.
    """
    from .readers import detect_format, find_htd

    scheme, folder = args.scheme, args.input_folder
    if scheme == "auto":
        if not folder or not os.path.isdir(folder):
            raise ConfigError("--scheme auto needs --input-folder, the folder of raw images, to look at")
        scheme, why = detect_format(folder)
        get_logger("CellAnalysisWorkflow").info("--scheme auto: %s (%s)", scheme, why)
    with_htd = scheme == "imagexpress" and bool(folder) and os.path.isdir(folder) and find_htd(folder) is not None
    return scheme, bool(args.one_file_per_channel or scheme in ("harmony", "ome-tiff") or with_htd)


def cell_analysis_main(argv: Sequence[str] | None = None) -> int:
    """Run the cell-analysis workflow from command-line options; return the exit code."""
    from .script import workflow_main

    # Only the import job reads --input-folder (it is given to it), whichever steps run first.
    return workflow_main(
        "CellAnalysisWorkflow", cell_analysis_jobs, parser=cell_analysis_parser(), argv=argv, input_folder=None
    )


if __name__ == "__main__":
    sys.exit(cell_analysis_main())
