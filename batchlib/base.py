"""Base classes of batch jobs.

A job says what it reads (a file pattern, and keys inside containers), what
it writes (one output per input, or one per plate) and how (``run``). The
base class does the rest: matching, deciding what is up to date, validation,
atomic outputs, stamps and per-file results. A custom job is a subclass that
implements :meth:`BatchJob.run`::

    class Invert(BatchJobOnContainer):
        def __init__(self, **kwargs):
            super().__init__(input_key="raw", output_key="inverted", **kwargs)

        def run(self, input_files, output_files, **kwargs):
            for path in input_files:
                with open_file(path, "a") as f:
                    data = f[self.input_key][:]
                    f.create_dataset(self.output_key, data=data.max() - data)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from .errors import ConfigError, ContainerError, OutputError
from .io import open_file
from .io.backends import backend_of, is_container
from .layout import PER_FILE, PLATE, JobLayout
from .oserrors import input_error
from .params import params_hash

# Attributes of the base classes that say where a job reads and writes, not
# how it computes: they are kept out of the parameter hash.
_LAYOUT_ATTRS = frozenset({"input_pattern", "identifier", "input_folder", "output_folder"})

# parameter_names of a class and its bases, by class.
_DECLARED: dict[type, frozenset[str]] = {}

# Expensive objects (models) loaded once per worker process: see worker_resource.
_WORKER_RESOURCES: dict[tuple, Any] = {}


def check_result(result: Any, what: str) -> str | None:
    """Turn what a ``validate_*`` hook returned into a problem, or None if fine.

    A hook returns None or True when valid, False or a string (the reason)
    when not.
    """
    if result is None or result is True:
        return None
    if result is False:
        return f"{what} returned False"
    return str(result)


class BatchJob:
    """A job that maps every input file matching a pattern to one output file.

    Parameters
    ----------
    input_pattern : str
        Glob pattern of the input file names (``"*.tif"``); hidden files and
        batchlib's temporary files never match.
    output_ext : str, optional
        Extension of the outputs (``".png"``): the output of ``a.tif`` is
        ``<folder>/a.png``. Without it the output keeps the input's name,
        which needs an ``input_folder`` other than the plate folder.
    identifier : str, optional
        Tells apart two jobs of the same class in one workflow; the job's
        name is the class name plus ``_<identifier>``.
    input_folder : path-like, optional
        Where the inputs are, if not in the plate folder.

    Notes
    -----
    Subclasses implement :meth:`run`. Class attributes:

    ``version``
        Bump it when the job's code changes its output: every file reruns.
    ``facts_version``
        Bump it when :meth:`input_facts` reads a header differently: the
        facts the ledger keeps from before are read again (nothing reruns
        for it).
    ``batch_size``
        Files per call of :meth:`run` (at most; see
        :func:`batchlib.executors.batch_size_for`).
    ``atomic_outputs``
        If True (the default for plain file outputs), :meth:`run` receives
        temporary paths that are renamed to the real outputs only after it
        returned. Outputs that are keys in containers are written in place.

    ``parameter_names``
        The public attributes that change what the job writes. Each class
        names its own; its bases' are added. Their values are hashed
        (:meth:`parameters`): changing one reruns every file. Setting a
        public attribute that is not named there raises
        :class:`~batchlib.errors.ConfigError`, so a derived value, a cache or
        a client cannot become a parameter by accident: name those ``_x``.

    Jobs are pickled to the worker processes: their attributes must pickle,
    or be rebuilt there (``__getstate__``/``__setstate__``, or
    :meth:`worker_resource` for a model or a client).
    """

    version: ClassVar[str] = "1"
    facts_version: ClassVar[str] = "1"
    parameter_names: ClassVar[tuple[str, ...]] = ("output_ext",)
    batch_size: ClassVar[int] = 1
    atomic_outputs: ClassVar[bool] = True
    kind: ClassVar[str] = PER_FILE
    #: The executor lent by the workflow (:meth:`lending_workers`); None: calls run here.
    _lent_executor: Any = None

    def __init__(
        self,
        input_pattern: str = "*",
        output_ext: str | None = None,
        identifier: str | None = None,
        input_folder: str | os.PathLike | None = None,
    ):
        if output_ext is not None and not output_ext.startswith("."):
            raise ConfigError(f"output_ext must start with '.', got {output_ext!r} for {type(self).__name__}")
        self.input_pattern = input_pattern
        self.output_ext = output_ext
        self.identifier = identifier
        self.input_folder = os.fspath(input_folder) if input_folder is not None else None

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and name not in _LAYOUT_ATTRS and name not in self.declared_parameters():
            cls = type(self).__name__
            raise ConfigError(
                f"{cls}.{name}: public attributes of a job are its parameters, and {name!r} is not in "
                f"{cls}.parameter_names; add it there if it changes the output (a change then reruns the job), "
                f"or name it '_{name}' if it does not"
            )
        object.__setattr__(self, name, value)

    @classmethod
    def declared_parameters(cls) -> frozenset[str]:
        """The ``parameter_names`` of this class and of its bases."""
        declared = _DECLARED.get(cls)
        if declared is None:
            declared = frozenset(n for c in cls.__mro__ for n in vars(c).get("parameter_names", ()))
            _DECLARED[cls] = declared
        return declared

    # ------------------------------------------------------------- identity
    @property
    def name(self) -> str:
        """Class name, plus ``_<identifier>`` if one was given."""
        cls = type(self).__name__
        return cls if self.identifier is None else f"{cls}_{self.identifier}"

    def parameters(self) -> dict:
        """The parameters that affect the output; a change reruns every file.

        By default, the attributes named in ``parameter_names`` that the
        instance set. Override to hash a derived form of one (a model's file
        fingerprint rather than its path).
        """
        declared = self.declared_parameters()
        return {k: v for k, v in vars(self).items() if k in declared}

    def params_hash(self, run_kwargs: dict | None = None) -> str:
        """Canonical hash of :meth:`parameters` and the keyword arguments of run."""
        return params_hash({"parameters": self.parameters(), "run": run_kwargs or {}})

    def layout(self, folder: str, input_folder: str | None = None, run_kwargs: dict | None = None) -> JobLayout:
        """Where this job reads and writes when run on plate ``folder``."""
        folder = os.path.abspath(folder)
        source = self.input_folder or input_folder or folder
        layout = JobLayout(
            name=self.name,
            kind=self.kind,
            input_folder=os.path.abspath(source),
            input_pattern=self.input_pattern,
            output_folder=folder,
            output_ext=self.output_ext,
            input_keys=tuple(self.input_keys),
            output_keys=tuple(self.output_keys),
            output_name=self.output_name.format(plate=os.path.basename(folder)) if self.output_name else None,
            params=self.params_hash(run_kwargs),
            version=str(self.version),
            group_by=self.group_by,
        )
        self.check_layout(layout)
        return layout

    def check_layout(self, layout: JobLayout) -> None:
        """Refuse layouts that would write over an input."""
        if layout.output_ext is None and layout.input_folder == layout.output_folder and not layout.input_keys:
            raise ConfigError(
                f"{self.name}: without output_ext its outputs would overwrite its inputs in {layout.output_folder}; "
                "give output_ext or an input_folder (raw input files are never modified)"
            )

    #: A filename scheme: the files of one site (one per channel) form one input (see ImportImages).
    group_by: str | None = None

    # Keys inside containers: none for plain file jobs.
    input_keys: Sequence[str] = ()
    output_keys: Sequence[str] = ()
    output_name: str | None = None

    # ------------------------------------------------------------- the work
    def run(self, input_files: list[str], output_files: list[str], **kwargs: Any) -> None:
        """Process ``input_files``, writing ``output_files[i]`` from ``input_files[i]``.

        Raise to mark the whole call as failed; with several files per call,
        each file is then retried alone so that one bad file does not fail the
        others.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement run(input_files, output_files, **kwargs)")

    def validate_input(self, path: str) -> bool | str | None:
        """Check an input before it is processed.

        Return None (or True) if valid, else a string saying why not (or
        False). Invalid inputs are recorded with the reason and not passed to
        :meth:`run`; such a verdict is checked again once the file changes.
        For a reason outside the file's content (a permission), raise
        ``InvalidInputError(reason, recheck=True)`` instead: checked again on
        every run. An ``OSError`` raised here is classified the same way
        (:func:`batchlib.oserrors.input_error`). By default: the file exists
        and can be opened, and if the job reads keys, it is a container that
        opens and holds them.
        """
        if self.input_keys:
            return missing_keys(path, self.input_keys, "input")
        try:
            with open(path, "rb"):  # unreadable: an OSError, which the caller classifies
                pass
        except IsADirectoryError:
            return None  # a folder input (of a plate job)
        except FileNotFoundError as err:
            if os.path.islink(path):
                raise input_error(err, path) from err
            return f"{path} does not exist"
        return None

    def input_facts(self, path: str) -> dict:
        """What :meth:`plate_problems` needs to know of one input, as JSON-able values.

        Read cheaply (a file's header, not its pixels). Runs in the workflow's
        driver, only for jobs that override :meth:`plate_problems`; the facts
        are kept in the ledger and read again only when the file changes.
        """
        return {}

    def plate_problems(self, facts: dict[str, dict], kept: set[str]) -> dict[str, str]:
        """Inputs that are invalid because of the rest of the plate, with the reason, by name.

        Override it for checks that need every input at once: a file unlike
        the plate's others, two files for the same well and site. It gets
        :meth:`input_facts` of every input by name, and the names whose
        results are up to date (``kept``: prefer them, so a newcomer does not
        displace work already done). Runs in the driver before any file is
        sent to a worker; such verdicts are checked again on every run, so
        they heal when the rest of the plate changes. Default: none.
        """
        return {}

    def expected_inputs(self) -> int | None:
        """How many inputs the job expects in all, where it knows (from the plate metadata); None if not.

        Watch mode takes a plate as complete once that many raw files settled.
        Default: None.
        """
        return None

    def missing_inputs(self, names: list[str]) -> dict[str, str]:
        """Inputs the job expected but did not find, with why, by name: reported (status, log), never run.

        ``names`` are the input names present. The importer overrides it with
        the fields its plate metadata lists whose files are not on disk.
        Runs in the driver after planning. Default: none.
        """
        return {}

    def validate_output(self, path: str) -> bool | str | None:
        """Check an output after :meth:`run`; same convention and defaults as validate_input."""
        if self.output_keys:
            return missing_keys(path, self.output_keys, "output")
        if not os.path.exists(path):
            return f"{path} was not written"
        return None

    def warm_up(self) -> None:
        """Load now what the first run would load (heavy imports, a model); by default nothing.

        A watcher calls it once when it starts, before images arrive, so that
        the first image waits no longer than the others; runs in the same
        process reuse what it loaded (:meth:`worker_resource`).
        """

    def worker_resource(self, name: str, factory: Callable[[], Any]) -> Any:
        """An object made by ``factory`` once per worker process and reused.

        Use it for anything expensive, such as a model::

            model = self.worker_resource("model", self.load_model)

        The object is kept per job name and parameters, across files,
        batches and jobs run in the same worker.
        """
        key = (self.name, self.params_hash(), name)
        if key not in _WORKER_RESOURCES:
            _WORKER_RESOURCES[key] = factory()
        return _WORKER_RESOURCES[key]

    def map_parallel(self, fn: Callable[..., Any], arg_list: Sequence[tuple]) -> list[Any]:
        """``[fn(*args) for args in arg_list]``, spread over the workflow's workers.

        For plate jobs with per-image work (reading each image's tables,
        writing each field of an export): the workflow runs a plate job in
        the driver and lends it its executor, so with ``n_jobs > 1`` or dask
        the calls run in parallel. ``fn`` must be a module-level function and
        its arguments picklable. Results come back in the order of
        ``arg_list``; if a call fails, :class:`OutputError` names it.
        """
        if len(arg_list) < 2:
            return [fn(*args) for args in arg_list]
        return self._map_on_executor(fn, arg_list)

    def call_in_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in one of the workflow's workers (in this process if it has none).

        For a plate job's single step that needs modules the workers have
        already imported (ome-zarr-py's writers, matplotlib): the driver then
        does not import them itself. ``fn`` and failures as for :meth:`map_parallel`.
        """
        return self._map_on_executor(fn, [args])[0]

    @property
    def per_plate(self) -> bool:
        """True for a :class:`PlateJob` (many inputs, one output), False for one output per input."""
        return self.kind == PLATE

    @contextmanager
    def lending_workers(self, executor: Any) -> Iterator[None]:
        """Within the block, :meth:`map_parallel` and :meth:`call_in_worker` use ``executor``'s workers.

        The workflow lends a plate job its executor while the job runs in the
        driver. Outside the block they run in this process.
        """
        self._lent_executor = executor
        try:
            yield
        finally:
            self._lent_executor = None

    def _map_on_executor(self, fn: Callable[..., Any], arg_list: Sequence[tuple]) -> list[Any]:
        from .executors import FailedCall

        executor = self._lent_executor
        if executor is None:
            return [fn(*args) for args in arg_list]
        results: list[Any] = [None] * len(arg_list)
        calls = [(i, fn, tuple(args)) for i, args in enumerate(arg_list)]
        for outcome in executor.map_unordered(_call_indexed, calls):
            if isinstance(outcome, FailedCall):
                call_args = outcome.call_args[2]  # (index, fn, args) as handed to _call_indexed
                raise OutputError(f"{self.name}: {fn.__name__}{repr(call_args)[:200]} failed: {outcome.error}")
            index, value = outcome
            results[index] = value
        return results

    # ------------------------------------------------------------- calling


class BatchJobOnContainer(BatchJob):
    """A job whose inputs and outputs are keys inside per-image containers.

    Parameters
    ----------
    input_pattern : str
        Glob of the input containers (default ``"*.h5"``).
    output_ext : str, optional
        Extension of the output containers when they differ from the inputs
        (an import job reading TIFFs and writing ``.h5``); by default the job
        writes into the container it reads.
    input_key, output_key : str or list of str, optional
        Keys read and written inside the containers. Each written key gets a
        producer stamp, so later jobs see when it changes.
    identifier, input_folder
        As for :class:`BatchJob`.
    """

    atomic_outputs: ClassVar[bool] = False
    parameter_names: ClassVar[tuple[str, ...]] = ("input_keys", "output_keys")

    def __init__(
        self,
        input_pattern: str = "*.h5",
        output_ext: str | None = None,
        input_key: str | Sequence[str] | None = None,
        output_key: str | Sequence[str] | None = None,
        identifier: str | None = None,
        input_folder: str | os.PathLike | None = None,
    ):
        super().__init__(input_pattern, output_ext, identifier, input_folder)
        self.input_keys = _as_keys(input_key)
        self.output_keys = _as_keys(output_key)

    def warm_up(self) -> None:
        """Import the library of its containers (h5py, z5py or zarr): the first run would."""
        example = "x" + self.output_ext if self.output_ext else self.input_pattern  # a name of its containers
        if is_container(example):
            backend_of(example).load()

    @property
    def input_key(self) -> str | None:
        """The first input key (the only one, for most jobs)."""
        return self.input_keys[0] if self.input_keys else None

    @property
    def output_key(self) -> str | None:
        """The first output key."""
        return self.output_keys[0] if self.output_keys else None

    def check_layout(self, layout: JobLayout) -> None:
        if not layout.output_keys:
            raise ConfigError(f"{self.name}: a container job needs at least one output_key")


class PlateJob(BatchJob):
    """A job with many inputs and one output per plate (aggregate, export, upload).

    It reruns when the set of inputs or the stamp of any input changes.
    :meth:`run` is called once, with every input file and a one-element list
    holding the output file.

    Parameters
    ----------
    input_pattern : str
        Glob of the inputs.
    output_name : str
        Name of the output file in the plate folder; ``{plate}`` in it is
        replaced by the plate folder's name (``"{plate}_table.hdf5"``).
    input_key : str or list of str, optional
        Keys read in every input container.
    output_key : str or list of str, optional
        Keys written in the output container, if it is one; otherwise the
        output is a plain file (or folder) written atomically.
    identifier, input_folder
        As for :class:`BatchJob`.
    """

    kind: ClassVar[str] = PLATE
    parameter_names: ClassVar[tuple[str, ...]] = ("output_name", "input_keys", "output_keys")

    def __init__(
        self,
        input_pattern: str,
        output_name: str,
        input_key: str | Sequence[str] | None = None,
        output_key: str | Sequence[str] | None = None,
        identifier: str | None = None,
        input_folder: str | os.PathLike | None = None,
    ):
        super().__init__(input_pattern, None, identifier, input_folder)
        self.output_name = output_name
        self.input_keys = _as_keys(input_key)
        self.output_keys = _as_keys(output_key)

    def check_layout(self, layout: JobLayout) -> None:
        if not layout.output_name or os.sep in layout.output_name:
            raise ConfigError(f"{self.name}: output_name must be a file name, got {layout.output_name!r}")


def _call_indexed(index: int, fn: Callable[..., Any], args: tuple) -> tuple[int, Any]:
    return index, fn(*args)


def _as_keys(key: str | Sequence[str] | None) -> tuple[str, ...]:
    if key is None:
        return ()
    if isinstance(key, str):
        return (key,)
    return tuple(key)


def missing_keys(path: str, keys: Sequence[str], what: str) -> str | None:
    """What is missing of ``keys`` in container ``path`` (or why it does not open), or None."""
    try:
        with open_file(path, "r") as f:
            missing = [k for k in keys if k not in f]
    except ContainerError as err:
        return str(err)
    if missing:
        return f"{path} lacks {what} key(s) {', '.join(missing)}"
    return None
