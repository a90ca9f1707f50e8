"""Running a pipeline on Ray: the model each actor builds, the cluster's room for the actors, and every way a run
fails on Ray's side as one sentence. Shared by ``evaluate --ray`` (``dataset_pipeline``) and ``trust --ray``
(``trust.distributed``). Ray is imported inside these functions only, so ``import explainers`` never needs it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TypeVar

from explainers.distributed.session import import_ray, ray_session
from explainers.errors import InputError
from explainers.models.loading import LoadedModel, load_model
from explainers.plugins import load_plugin

READ_CPUS = 0.25  # reading and decoding a batch is light next to the model's pass: readers share the actors' cores
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


def local_cpus(actors: int, cpus_per_actor: float) -> float:
    """CPU slots for a local Ray: the machine's cores, and at least the actors' share plus room for one read."""
    return max(float(os.cpu_count() or 1), actors * cpus_per_actor + READ_CPUS)


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
