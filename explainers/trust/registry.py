"""How a metric describes itself (what it measures, which way is better, parameters, needs, cost) and the registry.

A metric scores maps, one number per map: how faithful, robust, sparse or well placed a method's
map of one image is. Like a method, a metric is one registration, from which the trust page's
widgets, link keys, the CLI's options, the estimate, the benchmark's floor and the README table
follow. Plugins register theirs through ``register_metric``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from explainers.errors import InputError
from explainers.methods.registry import Param, PassGroup, in_batches
from explainers.models.loading import LoadedModel

# What each family asks of a map, in the order pages and reports list them.
FAMILIES = {
    "faithfulness": "Does removing what the map points at change the model's score?",
    "randomisation": "Does the map change when the model's learned weights are destroyed?",
    "robustness": "Does the map stay put when the image changes imperceptibly?",
    "complexity": "Is the map concentrated enough for a person to read?",
    "localisation": "Does the map point at the object the user marked?",
}


class MapRequest(NamedTuple):
    """How one map was made: enough to make it again, on another input or another model."""

    method: str
    layer: str | None
    params: tuple[tuple[str, Any], ...]  # the method's resolved parameters, sorted by name


@dataclass
class MetricBatch:
    """What a metric receives: maps of several images by several methods, scored together.

    Map ``m`` explains ``classes[m]`` on ``pixels[m]``, made as ``requests[m]`` says. Images
    repeat across methods: the metric batches its model passes over all of them at once.
    """

    model: LoadedModel
    pixels: np.ndarray  # (M, H, W, 3) uint8 at the model's input size
    maps: np.ndarray  # (M, H, W) float32 raw maps, as ``attribute`` returns them (signed for some methods)
    classes: np.ndarray  # (M,) int32 the class each map explains
    requests: list[MapRequest]  # (M,) the method, layer and parameters behind each map
    seeds: np.ndarray  # (M,) int64 from each image's content: random draws do not depend on the batch
    masks: np.ndarray | None = None  # (M, H, W) bool, True on the object; None when the user gave none
    batch_size: int = 64

    def __len__(self) -> int:
        return len(self.maps)


class CostContext(NamedTuple):
    """What a metric's cost depends on besides its parameters: one MetricBatch, as the evaluation sends it."""

    maps: int  # maps scored together (images × methods)
    size: tuple[int, int]  # the model's input (H, W)
    batch_size: int
    # The passes making ``n`` of the batch's maps again costs, with their own methods (``n`` shared evenly among the
    # batch's methods, as each method has a map of every image): what a metric that remakes maps pays.
    method_passes: Callable[[int], list[PassGroup]]


MetricFn = Callable[[MetricBatch, dict[str, Any]], np.ndarray]
MetricCost = Callable[[dict[str, Any], CostContext], list[PassGroup]]
# Seconds of a metric's work outside the model's passes, for one MetricBatch (ROAD's imputation): measured on this
# machine by the metric itself, as the passes' cost is.
MetricWork = Callable[[dict[str, Any], CostContext], float]


def no_passes(params: dict[str, Any], context: CostContext) -> list[PassGroup]:
    """What a metric read from the map alone costs: no model pass."""
    return []


def no_work(params: dict[str, Any], context: CostContext) -> float:
    """A metric whose work besides its passes is small next to them: none counted."""
    return 0.0


def forward_batches(inputs: int, batch_size: int) -> list[PassGroup]:
    """``inputs`` forward inputs sent in full batches of ``batch_size``, as PassGroups."""
    return in_batches(False, inputs, batch_size)


@dataclass(frozen=True, kw_only=True)
class Metric:
    """A metric's description: from it come widgets, link keys, CLI options, estimates and the README table."""

    name: str
    label: str
    family: str  # one of FAMILIES
    reference: str
    run: MetricFn
    higher_is_better: bool
    help: str  # what it computes, in a sentence or two, with its exact rule (tolerances, normalisation)
    params: tuple[Param, ...] = ()
    needs_masks: bool = False
    cost: MetricCost = no_passes
    work: MetricWork = no_work
    # An absolute bar, when the metric has one (the sanity check's 0.5): a method passes when its interval lies
    # wholly on the better side. None: the metric only ranks methods against each other.
    threshold: float | None = None

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    def better(self, a: float, b: float) -> bool:
        """True when score ``a`` is strictly better than ``b`` by this metric."""
        return a > b if self.higher_is_better else a < b

    def unavailable(self, has_masks: bool) -> str | None:
        """Why this metric cannot score the inputs at hand, or None when it can."""
        if self.needs_masks and not has_masks:
            return f"{self.label} needs object masks or boxes, and none were given."
        return None


METRICS: dict[str, Metric] = {}


def register_metric(name: str, label: str, family: str, reference: str, *, higher_is_better: bool, help: str,
                    params: tuple[Param, ...] = (), needs_masks: bool = False, cost: MetricCost = no_passes,
                    work: MetricWork = no_work, threshold: float | None = None) -> Callable[[MetricFn], MetricFn]:
    """Decorate a metric's function ``(MetricBatch, params) -> (M,) scores`` to add it, described, to the registry.

    ``cost`` states the model passes one MetricBatch takes, ``work`` the seconds of its work besides them when that
    is not small (ROAD's imputation): the estimate and the benchmark's floor are made of both.
    """
    if family not in FAMILIES:
        raise ValueError(f"'{family}' is not a metric family; use one of {', '.join(FAMILIES)}.")

    def add(fn: MetricFn) -> MetricFn:
        METRICS[name] = Metric(name=name, label=label, family=family, reference=reference, run=fn,
                               higher_is_better=higher_is_better, help=help, params=tuple(params),
                               needs_masks=needs_masks, cost=cost, work=work, threshold=threshold)
        return fn

    return add


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise InputError(f"'{name}' is not a metric; choose one of {', '.join(METRICS)}.")
    return METRICS[name]


def metric_names(has_masks: bool = True) -> list[str]:
    """The registered metrics the inputs allow, in registration order."""
    return [name for name, metric in METRICS.items() if metric.unavailable(has_masks) is None]


def markdown_table() -> str:
    """The registered metrics as the README's Markdown table."""
    rows = ["| metric | name | family | better | parameters (default, allowed) | needs | reference |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for m in METRICS.values():
        given = ", ".join(f"`{p.name}={p.default!r}` ({p.describe()})" for p in m.params)
        rows.append(f"| {m.label} | `{m.name}` | {m.family} | {'higher' if m.higher_is_better else 'lower'} | "
                    f"{given} | {'masks or boxes' if m.needs_masks else ''} | {m.reference} |")
    return "\n".join(rows)
