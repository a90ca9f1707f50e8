"""A dataset evaluation as a Ray Data pipeline: the same per-batch pass as in-process, on many machines.

The driver lists the files (``sources.list_images``); Ray tasks read and decode
them at the model's input size; a fixed pool of actors, each holding one copy of
the model built from a picklable ``ModelSpec``, scores batches with
``scoring.score_rows``; the driver writes the rows it receives as Parquet under
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

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from explainers.datasets import scoring, storage
from explainers.datasets.scoring import DEFAULT_LAYER, CamLayer, chosen_cam_layer
from explainers.datasets.sources import Listing, Reader, list_images
from explainers.distributed import cluster
from explainers.distributed.cluster import READ_CPUS, ModelSpec, actor_model, check_ray_options, run_on_ray
from explainers.distributed.session import LOCAL
from explainers.errors import InputError
from explainers.inputs.images import resize_batch
from explainers.models.loading import LoadedModel

if TYPE_CHECKING:
    import pyarrow as pa

ROWS_PER_FILE = 16384  # fewer, larger Parquet files: opening a results folder reads every file's footer


def read_batch(batch: pa.Table, root: str, remote: bool, size: tuple[int, int]) -> dict[str, np.ndarray]:
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


class Scorer:
    """The Ray actor: builds the model once, then scores batches with the in-process run's ``score_rows``."""

    def __init__(self, spec: ModelSpec, fingerprint: str, cam_layer: str | None, threads: int) -> None:
        self.model = actor_model(spec, fingerprint, threads)
        self.cam_layer = cam_layer

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        import pyarrow as pa

        images = [str(e) if e else p for p, e in zip(batch["pixels"], batch["error"])]
        columns = scoring.score_rows(self.model, [str(p) for p in batch["path"]], batch["true"].tolist(), images,
                                     self.cam_layer)
        return pa.table(columns, schema=storage.SCHEMA)


@dataclass
class RayRun:
    """What ``evaluate_on_ray`` did: the listing it scored, the rows it wrote and when each batch arrived."""

    listing: Listing
    rows: int
    errors: int
    seconds: float
    runner: str
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (seconds since the start, rows) per batch


class _RowsWriter:
    """Writes the rows as they arrive, in files of at least ROWS_PER_FILE rows."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.pending: list[pa.Table] = []  # rows received since the last file was written
        self.count = 0  # rows in ``pending``
        self.files = 0  # files written
        storage.clear_rows(out)

    def add(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.count += table.num_rows
        if self.count >= ROWS_PER_FILE:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if self.pending:
            storage.write_rows(self.out, pa.concat_tables(self.pending), name=f"part-{self.files:05d}")
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
    items = ray.data.from_items(batches, override_num_blocks=len(batches))
    # Set on this dataset's own copy of the context: other pipelines in this process keep theirs.
    # Read from ``cluster`` when the run starts: run_on_ray's message about actors too slow to start names it too.
    items.context.wait_for_min_actors_s = cluster.ACTOR_START_SECONDS
    # A reader per actor: each reader process imports the engine (and TensorFlow) once, seconds of CPU apiece.
    decoded = items.map_batches(
        read_batch,  # type: ignore[arg-type]  # Ray's stubs take a one-argument fn; fn_kwargs supplies the rest
        batch_size=1, batch_format="pyarrow", num_cpus=READ_CPUS, compute=ray.data.TaskPoolStrategy(size=actors),
        fn_kwargs={"root": listing.root, "remote": listing.remote, "size": tuple(model.input_size)})
    scored = decoded.map_batches(Scorer, batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=actors),
                                 num_cpus=cpus_per_actor, num_gpus=gpus_per_actor or None,
                                 fn_constructor_kwargs={"spec": spec, "fingerprint": model.fingerprint,
                                                        "cam_layer": cam_layer,
                                                        "threads": max(1, math.floor(cpus_per_actor))})
    writer = _RowsWriter(out)
    run = RayRun(listing, 0, 0, 0.0, "")
    start = time.perf_counter()
    for batch in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
        table = cast("pa.Table", batch)  # batch_format="pyarrow"; Ray annotates the union of every format
        writer.add(table)
        run.rows += table.num_rows
        run.errors += table.num_rows - pc.sum(pc.is_null(table["error"]).cast(pa.int64())).as_py()
        run.arrivals.append((time.perf_counter() - start, table.num_rows))
        if on_progress:
            on_progress(run.rows, len(listing.paths))
    writer.flush()
    run.seconds = time.perf_counter() - start
    return run


def evaluate_on_ray(model: LoadedModel, data: str | Path, out: str | Path, *, address: str = LOCAL,
                    spec: ModelSpec | None = None, mapping_mode: str = "auto", cam_layer: CamLayer = DEFAULT_LAYER,
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
    layer = chosen_cam_layer(model, cam_layer)
    scoring.cam_shape(model, layer)  # refuses a layer without a fixed spatial size before Ray starts
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
        model, spec, listing, out, cam_layer=layer, actors=actors, cpus_per_actor=cpus_per_actor,
        gpus_per_actor=gpus_per_actor, batch_size=batch_size, on_progress=on_progress))
    run.runner = "ray local" if address == LOCAL else f"ray {address}"
    storage.write_info(out, storage.run_info(
        model, cam_layer=layer, root=listing.root, mapping=listing.mapping, skipped=listing.skipped,
        total=len(listing.paths), seconds=run.seconds, runner=run.runner))
    return run
