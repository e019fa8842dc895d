"""A batch of plates: per-plate normalization, then feature selection and consensus across the batch.

A batch folder holds plate folders (``<batch>/<plate>/``), each processed by
the cell-analysis workflow (``<plate>_profiles/``). :func:`run_profiling_batch`:

1. takes the batch's lock (``<batch>/batchlib/``; each plate keeps its own);
2. runs the ``normalize`` step on every plate with an export, through the
   plate's own workflow run: a plate whose profiles did not change is not
   normalized again (its ledger says so);
3. decides (:func:`batch_action`, a pure function) whether the batch-level
   steps run: when the normalized well profiles of any plate, the set of
   plates, or the settings changed since their last run;
4. feature selection (:func:`batchlib.feature_select.select_features`) over
   the well profiles of all plates together, written as
   ``<batch>/<batch>_feature_selected.parquet`` (and the dropped features
   in ``<batch>_dropped_features.txt``), and consensus profiles
   (:func:`batchlib.consensus.consensus_profiles`) as
   ``<batch>/<batch>_consensus.parquet``; each file written to a temporary
   name and renamed, and the record of what they were made from
   (``batchlib/profiling_batch.json``) written last, so that a run killed at
   any point is redone by the next;
5. writes ``batchlib/profiling_batch.status`` (what ``batchlib status`` shows).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .consensus import consensus_profiles
from .errors import ConfigError
from .feature_select import read_blocklist, select_features
from .log import get_logger
from .profile_files import write_csv, write_parquet
from .state import BOOKKEEPING_FOLDER
from .state.atomic import atomic_path, atomic_write
from .state.lock import FolderLock
from .state.stamps import file_stamp
from .state.status import now_iso, read_status, write_status

#: The record of the batch-level steps' last run, and the batch's status file (in ``<batch>/batchlib/``).
RECORD, STATUS = "profiling_batch.json", "profiling_batch"
RUN, SKIP = "run", "skip"


@dataclass
class BatchOptions:
    """Settings of a batch (defaults: pycytominer's, and the profiling handbook's recipe)."""

    normalize_method: str = "standardize"
    normalize_samples: str = "all"
    operations: tuple[str, ...] = ("variance_threshold", "correlation_threshold", "drop_na_columns")
    corr_threshold: float = 0.9
    na_cutoff: float = 0.05
    blocklist: str | None = None
    consensus_by: tuple[str, ...] = ("Metadata_Well",)
    consensus_operation: str = "median"
    replicate_map: bool = True


def batch_plates(batch: str) -> tuple[list[str], list[str]]:
    """The plate folders of a batch with an export, and those without one yet (both sorted)."""
    ready, waiting = [], []
    for entry in sorted(os.scandir(batch), key=lambda e: e.name):
        if not entry.is_dir() or entry.name.startswith(".") or entry.name == BOOKKEEPING_FOLDER:
            continue
        (ready if os.path.isdir(os.path.join(entry.path, f"{entry.name}_profiles")) else waiting).append(entry.name)
    return ready, waiting


def normalized_wells(batch: str, plate: str) -> str:
    """Path of a plate's normalized well profiles."""
    return os.path.join(batch, plate, f"{plate}_normalized", f"{plate}_normalized.parquet")


def batch_action(previous: dict | None, inputs: dict[str, str | None], settings: dict) -> tuple[str, str]:
    """Whether the batch-level steps run (``RUN``) or are up to date (``SKIP``), and why.

    Examples
    --------
    >>> batch_action(None, {"P1": "1:1"}, {})
    ('run', 'never run')
    >>> batch_action({"inputs": {"P1": "1:1"}, "settings": {}}, {"P1": "1:1"}, {})
    ('skip', 'up to date')
    >>> batch_action({"inputs": {"P1": "1:1"}, "settings": {}}, {"P1": "1:1", "P2": "2:2"}, {})
    ('run', 'plates added: P2')
    """
    if previous is None:
        return RUN, "never run"
    if previous.get("settings") != settings:
        return RUN, "settings changed"
    before = previous.get("inputs", {})
    added, removed = sorted(set(inputs) - set(before)), sorted(set(before) - set(inputs))
    if added:
        return RUN, f"plates added: {', '.join(added)}"
    if removed:
        return RUN, f"plates removed: {', '.join(removed)}"
    changed = sorted(p for p in inputs if inputs[p] != before[p])
    if changed:
        return RUN, f"normalized profiles changed: {', '.join(changed)}"
    return SKIP, "up to date"


def run_profiling_batch(batch: str | os.PathLike, options: BatchOptions | None = None, **run_options) -> dict:
    """Run the profiling steps of a batch of plates (see the module); return its status.

    ``run_options`` go to each plate's workflow run (``n_jobs``, ...).
    """
    from .jobs.normalize import NormalizeProfiles
    from .workflow import run_workflow

    batch = os.path.abspath(os.fspath(batch))
    options = options or BatchOptions()
    logger = get_logger("batch")
    name = os.path.basename(batch)
    bookkeeping = os.path.join(batch, BOOKKEEPING_FOLDER)
    os.makedirs(bookkeeping, exist_ok=True)
    blocklist = read_blocklist(options.blocklist) if options.blocklist else []
    with FolderLock(bookkeeping, workflow=f"profiling batch {name}"):
        plates, waiting = batch_plates(batch)
        normalized = {}
        for plate in plates:
            job = NormalizeProfiles(options.normalize_method, options.normalize_samples)
            result = run_workflow(
                f"{plate}-normalize",
                os.path.join(batch, plate),
                [job],
                progress=False,
                ignore_failed_outputs=True,
                **run_options,
            )["NormalizeProfiles"]
            normalized[plate] = {"processed": result.processed, "failed": result.failed_files}
        inputs = {p: file_stamp(normalized_wells(batch, p)) for p in plates if not normalized[p]["failed"]}
        inputs = {p: s for p, s in inputs.items() if s is not None}
        # As JSON gives it back (tuples become lists), so that the record compares equal next time.
        settings = json.loads(json.dumps({**asdict(options), "blocklist_features": blocklist}))
        previous = _read_record(bookkeeping)
        action, why = batch_action(previous, inputs, settings)
        logger.info("batch %s: %d plate(s); feature selection and consensus: %s (%s)", name, len(inputs), action, why)
        if action == RUN and inputs:
            dropped = write_batch_outputs(batch, name, list(inputs), options, blocklist)
            record = {"inputs": inputs, "settings": settings, "dropped": dropped, "finished": now_iso()}
            atomic_write(os.path.join(bookkeeping, RECORD), json.dumps(record, indent=2) + "\n")
        status = {
            "batch": batch,
            "updated": now_iso(),
            "plates": {p: normalized[p] for p in plates},
            "plates_without_export": waiting,
            "batch_steps": {"action": action, "why": why, "plates": sorted(inputs)},
        }
        write_status(bookkeeping, STATUS, status)
    return status


def write_batch_outputs(batch: str, name: str, plates: list[str], options: BatchOptions, blocklist: list[str]) -> list:
    """Feature-selected and consensus profiles of the batch's plates; return the dropped features."""
    wells = pd.concat([pd.read_parquet(normalized_wells(batch, p)) for p in plates], ignore_index=True)
    dropped = select_features(
        wells,
        options.operations,
        na_cutoff=options.na_cutoff,
        corr_threshold=options.corr_threshold,
        blocklist=blocklist,
    )
    selected = wells.drop(columns=dropped)
    missing = [c for c in options.consensus_by if c not in selected.columns]
    if missing:
        raise ConfigError(
            f"--consensus-by {','.join(options.consensus_by)}: the profiles have no column {', '.join(missing)} "
            "(plate-map columns are Metadata_<name>; give the plates a --platemap)"
        )
    consensus = consensus_profiles(selected, list(options.consensus_by), options.consensus_operation)
    with atomic_path(os.path.join(batch, f"{name}_feature_selected.parquet")) as tmp:
        write_parquet(selected, str(tmp))
    atomic_write(os.path.join(batch, f"{name}_dropped_features.txt"), "".join(f"{f}\n" for f in dropped))
    with atomic_path(os.path.join(batch, f"{name}_consensus.parquet")) as tmp:
        write_parquet(consensus, str(tmp))
    if options.replicate_map:
        scores = replicate_map(selected, list(options.consensus_by))
        with atomic_path(os.path.join(batch, f"{name}_map.csv")) as tmp:
            write_csv(scores, str(tmp))
        with atomic_path(os.path.join(batch, f"{name}_map.png")) as tmp:
            save_map_plot(scores, list(options.consensus_by), f"{name}: replicate retrieval", str(tmp))
    return dropped


def replicate_map(profiles: pd.DataFrame, by: list[str], null_size: int = 10000, seed: int = 0) -> pd.DataFrame:
    """Replicate retrieval mean average precision per group of ``by`` (a treatment), with copairs.

    Each profile ranks all others by cosine similarity; its replicates (the
    same values of ``by``) should come before the profiles of other groups.
    The mAP of a group is the mean of its profiles' average precisions; its
    p-value comes from ``null_size`` random rankings (copairs), corrected for
    the number of groups (``corrected_p_value``, ``below_corrected_p`` at
    0.05). Missing feature values count as 0 (the reference's centre after
    normalization).
    """
    from copairs.map import average_precision, mean_average_precision

    from .normalize import FEATURE_PREFIXES

    features = [c for c in profiles.columns if c.startswith(FEATURE_PREFIXES)]
    meta = profiles[by].astype(str).reset_index(drop=True)
    values = np.array(profiles[features].to_numpy(dtype=float, na_value=float("nan")))  # a writable copy
    values[~np.isfinite(values)] = 0.0
    # copairs draws tqdm bars on stderr; a batch run shows its own summary instead.
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        precisions = average_precision(meta, values, pos_sameby=by, pos_diffby=[], neg_sameby=[], neg_diffby=by)
        scores = mean_average_precision(precisions, sameby=by, null_size=null_size, threshold=0.05, seed=seed)
    columns = ["mean_average_precision", "p_value", "corrected_p_value", "below_p", "below_corrected_p"]
    return scores[[*by, *columns]].sort_values(by).reset_index(drop=True)


def save_map_plot(scores: pd.DataFrame, by: list[str], title: str, path: str) -> None:
    """A bar per group: its mAP, dark where significant (corrected p < 0.05)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = scores.sort_values("mean_average_precision", ascending=False)
    labels = [" / ".join(str(v) for v in row) for row in ordered[by].itertuples(index=False)]
    colours = ["#1b6ca8" if hit else "#b8c7d6" for hit in ordered["below_corrected_p"]]
    figure, axes = plt.subplots(figsize=(max(4.0, 0.35 * len(labels) + 1.5), 3.5))
    axes.bar(range(len(labels)), ordered["mean_average_precision"], color=colours)
    axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    axes.set_ylim(0, 1)
    axes.set_ylabel("mAP (replicate retrieval)")
    axes.set_title(f"{title}; dark: corrected p < 0.05", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=120)
    plt.close(figure)


def batch_status(batch: str | os.PathLike) -> dict | None:
    """The batch's last status (``batchlib/profiling_batch.status``), or None if it never ran."""
    return read_status(os.path.join(os.fspath(batch), BOOKKEEPING_FOLDER), STATUS)


def _read_record(bookkeeping: str) -> dict | None:
    try:
        with open(os.path.join(bookkeeping, RECORD)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def batch_parser():
    """Options of ``workflows/profiling_batch_workflow.py`` (and its config file, ``-c``)."""
    import configargparse

    parser = configargparse.ArgParser(description="Profiling steps over a batch of plates")
    parser.add("-c", "--config", is_config_file=True, help="config file (key = value)")
    parser.add("--batch-folder", required=True, help="folder holding the plate folders")
    parser.add("--normalize-method", default="standardize", choices=["standardize", "robustize", "mad_robustize"])
    parser.add("--normalize-samples", default="all", help="reference rows of normalize: all, or a metadata query")
    parser.add(
        "--operations",
        default="variance_threshold,correlation_threshold,drop_na_columns",
        help="feature selection operations, in order (and blocklist with --blocklist)",
    )
    parser.add("--corr-threshold", type=float, default=0.9)
    parser.add("--na-cutoff", type=float, default=0.05)
    parser.add("--blocklist", default=None, help="file of features to drop (one per line)")
    parser.add("--consensus-by", default="Metadata_Well", help="replicate columns of the consensus, comma-separated")
    parser.add("--consensus-operation", default="median", choices=["median", "mean"])
    parser.add("--n-jobs", type=int, default=1)
    return parser


def batch_main(argv=None) -> int:
    """Run :func:`run_profiling_batch` from command-line options; return the exit code."""
    from .errors import BatchlibError
    from .exits import EXIT_OK, error_exit_code
    from .log import configure

    args = batch_parser().parse_args(argv)
    configure()
    operations = tuple(op.strip() for op in args.operations.split(",") if op.strip())
    if args.blocklist and "blocklist" not in operations:
        operations += ("blocklist",)
    options = BatchOptions(
        normalize_method=args.normalize_method,
        normalize_samples=args.normalize_samples,
        operations=operations,
        corr_threshold=args.corr_threshold,
        na_cutoff=args.na_cutoff,
        blocklist=args.blocklist,
        consensus_by=tuple(c.strip() for c in args.consensus_by.split(",") if c.strip()),
        consensus_operation=args.consensus_operation,
    )
    try:
        status = run_profiling_batch(args.batch_folder, options, n_jobs=args.n_jobs)
    except BatchlibError as err:
        return error_exit_code(err)
    steps = status["batch_steps"]
    print(
        f"batch {status['batch']}: {len(status['plates'])} plate(s); feature selection and consensus: "
        f"{steps['action']} ({steps['why']})"
    )
    return EXIT_OK
