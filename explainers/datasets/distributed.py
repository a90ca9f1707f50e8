"""A dataset evaluation as a Ray Data pipeline: the same per-batch pass as in-process, on many machines.

The driver lists the files (``sources.list_images``); Ray tasks read and decode
them at the model's input size; a fixed pool of actors, each holding one copy of
the model built from a picklable ``ModelSpec``, scores batches with
``results.score_rows``; the driver writes the rows it receives as Parquet under
``<out>/rows`` and the run's description as ``<out>/results.json``: the results
folder the in-process run writes. Ray is imported inside these functions only,
so ``import explainers`` never needs it.

The rows come back to the driver rather than being written by Ray's write tasks:
they are small (a few numbers and a map at layer resolution), the results folder
is on the driver's machine whatever the cluster, and progress can be shown.
Fault tolerance is Ray Data's: an actor that dies is restarted and its batch
retried, and the driver receives each batch's output once.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from explainers.datasets import results
from explainers.datasets.ray_session import LOCAL, import_ray, ray_session
from explainers.datasets.sources import Listing, Reader, list_images
from explainers.errors import InputError
from explainers.inputs.images import resize_batch
from explainers.models.loading import LoadedModel, load_model
from explainers.plugins import load_plugin

if TYPE_CHECKING:
    import pyarrow as pa

READ_CPUS = 0.25  # reading and decoding a batch is light next to the model's pass: readers share the actors' cores
ROWS_PER_FILE = 16384  # fewer, larger Parquet files: opening a results folder reads every file's footer
# Ray Data waits for resources, and for its actors to start, forever by default: on a busy cluster the run
# would hang. How long the actors' CPUs and GPUs may take to be free before the run gives up:
RESOURCES_SECONDS = 120
# and then how long the actors may take to start, model loading included: a large model's weights loading on a
# node for the first time take a while, hence minutes.
ACTOR_START_SECONDS = 300

Run = TypeVar("Run")


@dataclass(frozen=True)
class ModelSpec:
    """What ``load_model`` is called with, picklable: each actor builds its own copy of the model from it.

    Class names travel as a list rather than a labels file, so a worker never
    needs the driver's files for them; a model path must be readable on every node.
    """

    spec: str
    preprocessing: str | None = None
    labels: tuple[str, ...] | None = None
    output: str | int | None = None

    def load(self) -> LoadedModel:
        return load_model(self.spec, self.preprocessing, list(self.labels) if self.labels else None, self.output)

    @classmethod
    def of(cls, model: LoadedModel, output: str | int | None = None) -> ModelSpec:
        """The spec that rebuilds ``model`` (loaded with ``output`` chosen): its preset and class names made explicit,
        a model file's path made absolute (a worker's working folder is not the driver's)."""
        path = Path(model.spec)
        spec = str(path.resolve()) if not path.is_absolute() and path.exists() else model.spec
        return cls(spec, model.preprocessing, tuple(model.class_names), output)


def _read_batch(batch: pa.Table, root: str, remote: bool, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Decode a batch (rows holding lists of a batch's images) and resize it to the model's input (as
    ``model.resize`` would): fixed-shape pixels travel between Ray workers as one tensor. An unreadable image
    keeps its row, blank, with its reason in ``error``."""
    import pyarrow.compute as pc

    sources, paths = (pc.list_flatten(batch[name]).to_pylist() for name in ("source", "path"))
    reader = Reader(root, remote)
    decoded = [reader.decode(s, p) for s, p in zip(sources, paths)]
    blank = np.zeros((*size, 3), np.uint8)
    return {
        "path": np.asarray(paths, dtype=object),
        "true": pc.list_flatten(batch["true"]).to_numpy().astype(np.int32),
        "pixels": resize_batch([blank if isinstance(d, str) else d for d in decoded], size),
        "error": np.asarray([d if isinstance(d, str) else "" for d in decoded], dtype=object),
    }


def limit_threads(threads: int) -> None:
    """Give TensorFlow ``threads`` cores in this process: actors sharing a machine would otherwise each start
    one thread per core and slow each other down. Only possible before TensorFlow's first operation."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # a reused worker process whose TensorFlow already runs: it keeps its pools
        pass


def actor_model(spec: ModelSpec, fingerprint: str, threads: int, plugins: tuple[str, ...] = ()) -> LoadedModel:
    """An actor's copy of the driver's model, on ``threads`` cores, after importing ``plugins`` (which may register
    what the run asks for); InputError in one sentence when the node's file is not the driver's model."""
    limit_threads(threads)
    for plugin in plugins:
        load_plugin(plugin)
    model = spec.load()
    if model.fingerprint != fingerprint:
        raise InputError(f"'{spec.spec}' on this Ray node is not the model the run was started with (its weights "
                         f"or preprocessing differ); give every node the same file.")
    return model


class Scorer:
    """The Ray actor: builds the model once, then scores batches with the in-process run's ``score_rows``."""

    def __init__(self, spec: ModelSpec, fingerprint: str, cam_layer: str | None, threads: int) -> None:
        self.model = actor_model(spec, fingerprint, threads)
        self.cam_layer = cam_layer

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        import pyarrow as pa

        images = [str(e) if e else p for p, e in zip(batch["pixels"], batch["error"])]
        columns = results.score_rows(self.model, [str(p) for p in batch["path"]], batch["true"].tolist(), images,
                                     self.cam_layer)
        return pa.table(columns, schema=results.SCHEMA)


def local_cpus(actors: int, cpus_per_actor: float) -> float:
    """CPU slots for a local Ray: the machine's cores, and at least the actors' share plus room for one read."""
    return max(float(os.cpu_count() or 1), actors * cpus_per_actor + READ_CPUS)


@dataclass
class RayRun:
    """What ``evaluate_on_ray`` did: the listing it scored, the rows it wrote and when each batch arrived."""

    listing: Listing
    rows: int
    errors: int
    seconds: float
    runner: str
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (seconds since the start, rows) per batch


def _cause(error: Exception) -> str:
    """One sentence for a failed Ray run: an InputError raised on a worker (a model file missing on a node, say)
    keeps its own sentence; Ray passes it on as the last line of its message."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()] or [type(error).__name__]
    for line in reversed(lines):
        found = re.match(r"explainers\.errors\.\w+: (.+)$", line)
        if found:
            return f"On a Ray worker: {found.group(1)}"
    last = lines[-1].rstrip(".")
    if type(error).__module__ == "builtins" and last != type(error).__name__:
        last = f"{type(error).__name__}: {last}"  # an internal error of Ray Data's: its message may be a bare key
    return f"The Ray run failed: {last}."


def _from_ray(ray: ModuleType, error: Exception) -> bool:
    """Whether ``error`` comes from Ray rather than from this module: Ray Core's errors, Ray Data's own (a stalled
    run's timeout, say), and anything Ray Data's internals raise, which it marks as caused by a SystemException."""
    from ray.data.exceptions import ExecutionTimeoutError, SystemException

    return (isinstance(error, (ray.exceptions.RayError, ExecutionTimeoutError, SystemException))
            or isinstance(error.__cause__, SystemException))


def _resources(actors: int, cpus_per_actor: float, gpus_per_actor: float) -> str:
    gpus = f" and {gpus_per_actor:g} GPU(s)" if gpus_per_actor else ""
    return f"{actors} actor(s) with {cpus_per_actor:g} CPU(s){gpus} each"


def check_resources(ray: ModuleType, actors: int, cpus_per_actor: float, gpus_per_actor: float) -> None:
    """InputError in one sentence when the cluster this process is connected to has fewer CPUs or GPUs, busy or
    not, than the actors ask for (the readers need a share too), or when they are not free within
    RESOURCES_SECONDS: Ray Data would otherwise wait for them forever."""
    from ray.util.placement_group import placement_group, remove_placement_group

    have = ray.cluster_resources()
    cpus, gpus = float(have.get("CPU", 0)), float(have.get("GPU", 0))
    # A small tolerance: Ray keeps fractional resources in units of 1/10000.
    if actors * gpus_per_actor > gpus + 1e-4:
        raise InputError(f"{_resources(actors, cpus_per_actor, gpus_per_actor)} ask for "
                         f"{actors * gpus_per_actor:g} GPU(s), but the Ray cluster has {gpus:g}; lower --actors or "
                         f"--gpus-per-actor.")
    if actors * cpus_per_actor + READ_CPUS > cpus + 1e-4:
        raise InputError(f"{_resources(actors, cpus_per_actor, gpus_per_actor)} ask for "
                         f"{actors * cpus_per_actor:g} CPU(s), plus {READ_CPUS:g} for reading images, but the Ray "
                         f"cluster has {cpus:g}; lower --actors or --cpus-per-actor.")
    # Waited for as a placement group of this process's own, not by Ray Data's actors: removed, the group gives
    # back what it waited for at once, where actors Ray Data gave up on stay queued as long as a reference to
    # them lives (a logged traceback, say) and take the resources when they come free.
    actor = {"CPU": cpus_per_actor, **({"GPU": gpus_per_actor} if gpus_per_actor else {})}
    group = placement_group([actor] * actors + [{"CPU": READ_CPUS}])
    try:
        ray.get(group.ready(), timeout=RESOURCES_SECONDS)
    except ray.exceptions.GetTimeoutError:
        raise InputError(f"The Ray cluster had no room for {_resources(actors, cpus_per_actor, gpus_per_actor)} "
                         f"within {RESOURCES_SECONDS} s: its nodes are busy, or each too small for one actor; try "
                         f"again later or lower --actors.") from None
    finally:
        remove_placement_group(group)


class _RowsWriter:
    """Writes the rows as they arrive, in files of at least ROWS_PER_FILE rows."""

    def __init__(self, out: Path) -> None:
        self.out, self.pending, self.count, self.files = out, [], 0, 0
        results.clear_rows(out)

    def add(self, table) -> None:
        self.pending.append(table)
        self.count += table.num_rows
        if self.count >= ROWS_PER_FILE:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if self.pending:
            results.write_rows(self.out, pa.concat_tables(self.pending), name=f"part-{self.files:05d}")
            self.pending, self.count, self.files = [], 0, self.files + 1


def run_pipeline(model: LoadedModel, spec: ModelSpec, listing: Listing, out: Path, *, cam_layer: str | None,
                 actors: int, cpus_per_actor: float, gpus_per_actor: float, batch_size: int,
                 on_progress: Callable[[int, int], None] | None = None) -> RayRun:
    """Score ``listing`` on the Ray cluster this process is connected to, writing its rows to ``out/rows``."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import ray

    if on_progress:
        ray.data.DataContext.get_current().enable_progress_bars = False  # the caller shows its own
    # One row, and one block, per batch: reads spread over the cluster and no batch is split across two reads.
    # from_items builds the blocks here; from_arrow would run a Ray task per block for its metadata, and on a
    # cluster whose CPUs are all taken would wait for them forever.
    batches = [{"source": listing.sources[start:start + batch_size], "path": listing.paths[start:start + batch_size],
                "true": listing.true[start:start + batch_size]} for start in range(0, len(listing.paths), batch_size)]
    ds = ray.data.from_items(batches, override_num_blocks=len(batches))
    # Set on this dataset's own copy of the context: other pipelines in this process keep theirs.
    ds.context.wait_for_min_actors_s = ACTOR_START_SECONDS
    # A reader per actor: each reader process imports the engine (and TensorFlow) once, seconds of CPU apiece.
    ds = ds.map_batches(_read_batch, batch_size=1, batch_format="pyarrow", num_cpus=READ_CPUS,
                        compute=ray.data.TaskPoolStrategy(size=actors),
                        fn_kwargs={"root": listing.root, "remote": listing.remote, "size": tuple(model.input_size)})
    ds = ds.map_batches(Scorer, batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=actors),
                        num_cpus=cpus_per_actor, num_gpus=gpus_per_actor or None,
                        fn_constructor_kwargs={"spec": spec, "fingerprint": model.fingerprint, "cam_layer": cam_layer,
                                               "threads": max(1, math.floor(cpus_per_actor))})
    writer = _RowsWriter(out)
    run = RayRun(listing, 0, 0, 0.0, "")
    start = time.perf_counter()
    for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        writer.add(table)
        run.rows += table.num_rows
        run.errors += table.num_rows - pc.sum(pc.is_null(table["error"]).cast(pa.int64())).as_py()
        run.arrivals.append((time.perf_counter() - start, table.num_rows))
        if on_progress:
            on_progress(run.rows, len(listing.paths))
    writer.flush()
    run.seconds = time.perf_counter() - start
    return run


def check_ray_options(actors: int, cpus_per_actor: float, gpus_per_actor: float, batch_size: int = 1) -> None:
    """InputError in one sentence for a count or a share no cluster could honour, before anything starts."""
    if actors < 1 or batch_size < 1 or cpus_per_actor <= 0 or gpus_per_actor < 0:
        raise InputError("--actors and --batch-size must be at least 1, --cpus-per-actor above 0 and "
                         "--gpus-per-actor at least 0.")


def run_on_ray(address: str, actors: int, cpus_per_actor: float, gpus_per_actor: float,
               pipeline: Callable[[], Run]) -> Run:
    """``pipeline()`` connected to Ray (``address``, or this process's existing connection), once the cluster has
    room for the actors; every way it fails on Ray's side is InputError in one sentence. The pipelines of
    ``evaluate --ray`` and ``trust --ray`` share it."""
    ray = import_ray()
    session = contextlib.nullcontext() if ray.is_initialized() else ray_session(address, local_cpus(actors, cpus_per_actor))
    failure = ""
    try:
        with session:
            check_resources(ray, actors, cpus_per_actor, gpus_per_actor)
            return pipeline()
    except ray.exceptions.GetTimeoutError:
        # What Ray Data raises when the actors have not all started within wait_for_min_actors_s.
        failure = (f"{_resources(actors, cpus_per_actor, gpus_per_actor)} did not all start on the Ray cluster "
                   f"within {ACTOR_START_SECONDS} s: its nodes became busy, or loading the model takes them longer; "
                   f"try again later.")
    except Exception as error:
        if isinstance(error, InputError) or not _from_ray(ray, error):
            raise
        failure = _cause(error)
    # Raised here, after a collection, rather than in the except clause: a pipeline that failed while starting
    # is not shut down by Ray Data, and its actors, on a cluster this process stays connected to, live as
    # long as the exception chain that holds their handles.
    gc.collect()
    raise InputError(failure)


def evaluate_on_ray(model: LoadedModel, data: str | Path, out: str | Path, *, address: str = LOCAL,
                    spec: ModelSpec | None = None, mapping_mode: str = "auto", cam_layer: str | None = "default",
                    actors: int = 1, cpus_per_actor: float = 1.0, gpus_per_actor: float = 0.0, batch_size: int = 64,
                    on_listed: Callable[[Listing], None] | None = None,
                    on_progress: Callable[[int, int], None] | None = None) -> RayRun:
    """Evaluate the images in ``data`` (a local folder or a URI) on Ray; write the results folder ``out``.

    ``model`` is the driver's copy (class names, fingerprint, CAM layer); each of
    the ``actors`` builds its own from ``spec`` (default: ``ModelSpec.of(model)``).
    ``address`` is ``"local"`` (start Ray here) or a running cluster's ``host:port``;
    when this process is already connected to Ray, that connection is used.
    A file that cannot be read or decoded becomes a row with its reason. Raises
    InputError with one sentence for a bad input, an unreachable cluster or a failed run.
    """
    check_ray_options(actors, cpus_per_actor, gpus_per_actor, batch_size)
    out = Path(out)
    spec = spec or ModelSpec.of(model)
    if cam_layer == "default":
        cam_layer = model.default_cam_layer
    results.cam_shape(model, cam_layer)  # refuses a layer without a fixed spatial size before Ray starts
    listing = list_images(data, model, mapping_mode)
    if not listing.paths:
        # Refused here, before Ray starts: a pipeline with no rows writes no Parquet, and the folder would not open.
        unknown = listing.mapping.unknown
        folders = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise InputError(f"No image in '{listing.root}' is in a folder the model has a class for (mapping "
                         f"{listing.mapping.mode}; folders: {folders or 'none'}); check --mapping or the folder "
                         f"names.")
    if on_listed:
        on_listed(listing)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"'{out}' cannot be created: {error.strerror or error}.") from None
    run = run_on_ray(address, actors, cpus_per_actor, gpus_per_actor, lambda: run_pipeline(
        model, spec, listing, out, cam_layer=cam_layer, actors=actors, cpus_per_actor=cpus_per_actor,
        gpus_per_actor=gpus_per_actor, batch_size=batch_size, on_progress=on_progress))
    run.runner = "ray local" if address == LOCAL else f"ray {address}"
    results.write_info(out, results.run_info(
        model, cam_layer=cam_layer, root=listing.root, mapping=listing.mapping, skipped=listing.skipped,
        total=len(listing.paths), seconds=run.seconds, runner=run.runner))
    return run
