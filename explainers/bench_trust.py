"""``python -m explainers.bench --trust``: "which method to trust" on the digits demo, against its floor and estimate.

The evaluation the CLI's ``trust`` command runs by default, in process: the bundled digits CNN, its demo folder
(1,000 images, or ``--trust-images N``, N / 10 per class), the default methods (``cli.TRUST_METHODS``) and every
registered metric, localisation included, with the digits' strokes as object masks. Every run starts with the
caches cleared (the values, the maps and the prepared inputs) and the passes traced (a 10-image run before).

Per run:

- seconds: the whole evaluation (``evaluate_trust``), reading the images included;
- model passes: time spent inside ``Runtime.gradients``, the engine's only way to run a model (each call sends
  its batches through a compiled pass and converts the results to NumPy), timed by wrapping it on the class for
  the run, so the randomised copy's runtime counts too; every batch it sends is counted by kind and size;
- the floor: the passes the registrations state (``trust.evaluate.request_passes``: each method's ``cost`` and
  each metric's, at the sizes the evaluation sends them), each priced at the median of timed passes of its own
  kind and size on this model, timed right after the run (this CPU is cheaper per image in larger batches and
  its speed drifts); the ratio of the two is the passes' overhead over what no implementation can skip;
- ROAD's imputation: time spent in ``noisy_linear_fill``, against the metrics' registered ``work``;
- the estimate: ``trust_seconds`` (what the CLI and the page show) before the run, and its error against the
  seconds measured.

Medians over ``--repeats`` runs (3 by default here).
"""

from __future__ import annotations

import functools
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np

from explainers import RESULTS, load_model
from explainers.attribution import INPUTS
from explainers.methods.registry import PassGroup, get_method
from explainers.runtime.device import cores_of_others, cpu_mark
from explainers.runtime.passes import Runtime
from explainers.trust import faithfulness
from explainers.trust.evaluate import evaluate_trust, request_passes, trust_seconds
from explainers.trust.registry import metric_names
from explainers.trust.scoring import VALUES, trust_request

FLOOR_TIMINGS = 7  # timed passes of each kind and size beside a run; the median prices the floor
BATCH_SIZE = 64  # the CLI's default


class Run(NamedTuple):
    """One timed evaluation and what it is measured against."""

    seconds: float
    estimate: float
    pass_seconds: float  # inside Runtime.gradients
    floor: float  # the registered passes at the pass cost timed beside the run
    imputation: float  # inside noisy_linear_fill
    registered_work: float  # the metrics' registered work besides their passes
    passes_run: Counter  # (backward, images) -> batches sent
    passes_registered: Counter
    others: float | None  # cores other processes kept busy on average during the run (None where unknown)


@contextmanager
def timed_calls(owner: object, name: str, seconds: list[float], record: Callable | None = None) -> Iterator[None]:
    """Time every call of ``owner.name`` into ``seconds[0]`` while the block runs (``record(*args, **kwargs)`` sees
    each call first); the original is put back after."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def timed_call(*args, **kwargs):
        if record is not None:
            record(*args, **kwargs)
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[0] += time.perf_counter() - start

    setattr(owner, name, timed_call)
    try:
        yield
    finally:
        setattr(owner, name, original)


def _pass_recorder(sent: Counter) -> Callable:
    """What ``Runtime.gradients`` sends, as (backward, images) per batch: its batching rule, read from its
    arguments (a rescale-rule call pairs each image with its baseline, which no default method uses)."""

    def record(runtime: Runtime, x: np.ndarray, targets: np.ndarray, layers: tuple = (), *, backward: bool = True,
               batch_size: int = 16, **kwargs) -> None:
        per_pass = max(1, batch_size // 2) if kwargs.get("baselines") is not None else batch_size
        for start in range(0, len(x), per_pass):
            sent[(backward, min(per_pass, len(x) - start))] += 1

    return record


def _clear_caches() -> None:
    VALUES.clear()
    RESULTS.clear()
    INPUTS.clear()


def _floor(model, inputs: np.ndarray, groups: list[PassGroup]) -> float:
    """Seconds ``groups`` take at the median of ``FLOOR_TIMINGS`` passes of each kind and size, timed now."""
    runtime = model.runtime
    total = 0.0
    for group in groups:
        x = np.resize(inputs, (group.images_per_pass, *inputs.shape[1:]))
        targets = np.full(group.images_per_pass, -1, np.int32)
        timings = []
        for _ in range(FLOOR_TIMINGS):
            start = time.perf_counter()
            runtime.gradients(x, targets, wrt_input=group.backward, backward=group.backward,
                              batch_size=group.images_per_pass)
            timings.append(time.perf_counter() - start)
        total += group.passes * statistics.median(timings)
    return total


def _merged(parts) -> list[PassGroup]:
    counts: Counter = Counter()
    for part in parts:
        for group in part.passes:
            counts[(group.backward, group.images_per_pass)] += group.passes
    return [PassGroup(backward=backward, images_per_pass=per_pass, passes=count)
            for (backward, per_pass), count in counts.items()]


def _count(groups: Counter | list[PassGroup], backward: bool) -> tuple[int, int]:
    """(passes, images) of one kind."""
    items = groups.items() if isinstance(groups, Counter) else (
        ((group.backward, group.images_per_pass), group.passes) for group in groups)
    chosen = [(n, c) for (b, n), c in items if b == backward]
    return sum(c for _, c in chosen), sum(n * c for n, c in chosen)


def bench(repeats: int, images: int | None = None) -> None:
    from explainers.cli import TRUST_METHODS
    from explainers.datasets.sources import list_images
    from explainers.inputs.samples import DIGITS_TEST_FOLDER
    from explainers.models.loading import DIGITS_MODEL
    from explainers.trust.masks import masks_from_strokes

    model = load_model(DIGITS_MODEL)
    listing = list_images(DIGITS_TEST_FOLDER, model)
    classes = len(set(listing.true))
    per_class = None if images is None else max(1, images // classes)
    masks = masks_from_strokes()
    methods = [name for name in TRUST_METHODS if get_method(name).unavailable(model) is None]
    request = trust_request(model, methods, metric_names(has_masks=True), has_masks=True, batch_size=BATCH_SIZE)

    start = time.perf_counter()
    evaluate_trust(model, listing, request, per_class=1, masks=masks)  # traces every pass, the randomised copy's too
    trust_seconds(model, request, classes)  # times the pass cost and ROAD's imputation once, as a first estimate does
    print(f"one-time tracing and probes: {time.perf_counter() - start:.1f} s")
    inputs = model.preprocess([np.asarray(image) for image in _some_images(listing, 8)])

    count = len(listing.paths) if per_class is None else sum(min(per_class, n) for n in Counter(listing.true).values())
    runs: list[Run] = []
    for _ in range(repeats):
        _clear_caches()
        estimate = trust_seconds(model, request, count)
        parts = request_passes(model, request, count)
        sent: Counter = Counter()
        passes, imputation = [0.0], [0.0]
        with timed_calls(Runtime, "gradients", passes, _pass_recorder(sent)), \
                timed_calls(faithfulness, "noisy_linear_fill", imputation):
            mark, start = cpu_mark(), time.perf_counter()
            result = evaluate_trust(model, listing, request, per_class=per_class, masks=masks)
            took = time.perf_counter() - start
            others = cores_of_others(mark, took)
        if len(result.images) != count or result.computed != len(result.rows):
            raise RuntimeError("the evaluation did not compute every value: a cache was not cleared")
        registered = _merged(parts)
        runs.append(Run(took, estimate, passes[0], _floor(model, inputs, registered), imputation[0],
                        sum(part.work_seconds for part in parts), sent, Counter({(b, n): c for b, n, c in registered}),
                        others))
    _report(runs, count, len(request.methods), len(request.metrics))


def _some_images(listing, count: int) -> list[np.ndarray]:
    from explainers.inputs.images import decode_image
    from explainers.inputs.samples import DIGITS_TEST_FOLDER

    return [decode_image(DIGITS_TEST_FOLDER / path) for path in listing.paths[:count]]


def _report(runs: list[Run], images: int, methods: int, metrics: int) -> None:
    def median(values) -> float:
        return statistics.median(list(values))

    seconds, estimate = median(r.seconds for r in runs), median(r.estimate for r in runs)
    passes, floor = median(r.pass_seconds for r in runs), median(r.floor for r in runs)
    imputation, work = median(r.imputation for r in runs), median(r.registered_work for r in runs)
    ratio = median(r.pass_seconds / r.floor for r in runs)
    error = median(100 * (r.estimate - r.seconds) / r.seconds for r in runs)
    other = median(r.seconds - r.pass_seconds - r.imputation for r in runs)
    # Clamped at 0: the kernel's tick counts round, so a quiet machine can read a hair below it.
    others = ", ".join("?" if r.others is None else f"{max(0.0, r.others):.2f}" for r in runs)
    print(f"\ntrust evaluation, digits demo: {images:,} images x {methods} methods x {metrics} metrics (masks: the "
          f"digits' strokes), batches of {BATCH_SIZE}; medians of {len(runs)} runs, caches cleared before each "
          f"(cores other processes took during each: {others})\n")
    print(f"{'':34s} {'measured s':>10s} {'against s':>10s}  {'ratio / error':>14s}")
    print(f"{'whole evaluation vs estimate':34s} {seconds:10.1f} {estimate:10.1f}  {error:+13.0f}%")
    print(f"{'model passes vs floor':34s} {passes:10.1f} {floor:10.1f}  {ratio:14.2f}")
    print(f"{'ROAD imputation vs registered work':34s} {imputation:10.1f} {work:10.1f}  "
          f"{median(r.imputation / r.registered_work for r in runs):14.2f}")
    print(f"{'other work (NumPy, reading, caching)':34s} {other:10.1f} {'':>10s}  (not in the estimate)")
    last = runs[-1]
    for backward, kind in ((True, "backward"), (False, "forward")):
        run_passes, run_images = _count(last.passes_run, backward)
        reg_passes, reg_images = _count(last.passes_registered, backward)
        print(f"{kind} passes: {run_passes:,} run ({run_images:,} images), {reg_passes:,} registered "
              f"({reg_images:,} images)")
