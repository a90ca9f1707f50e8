"""How a method describes itself (parameters, availability, cost) and the registry of them all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from explainers.errors import InputError
from explainers.methods.completeness import Completeness
from explainers.runtime.passes import Runtime


@dataclass
class Job:
    """One batch to explain, prepared once and shared by every method."""

    runtime: Runtime
    x: np.ndarray  # (N, H, W, C) preprocessed model input
    pixels: np.ndarray  # (N, H, W, 3) uint8, the same images before preprocessing
    to_input: Callable[[np.ndarray], np.ndarray]  # pixels like ``pixels`` to model input like ``x``
    targets: np.ndarray  # (N,) int32 class per image, TOP1 = the model's own top class
    layer: str | None
    seeds: list[int]  # one per image, from its content, so random draws don't depend on the batch
    batch_size: int

    @property
    def size(self) -> tuple[int, int]:
        return self.x.shape[1:3]

    def needed_layer(self) -> str:
        """``layer`` for a method registered with ``needs_layer``, which is always given one (``attribute``)."""
        if self.layer is None:
            raise ValueError("this method reads a layer, and the job has none")
        return self.layer

    def top_classes(self) -> np.ndarray:
        """Targets with TOP1 resolved; costs one forward pass only if any is TOP1."""
        if (self.targets >= 0).all():
            return self.targets
        return self.runtime.forward(self.x, self.targets, batch_size=self.batch_size).classes


class Maps(NamedTuple):
    """What a method returns: its raw maps, the classes they explain and, for a method that claims completeness
    (its maps sum to f(x) - f(x0)), how far each map is from it. A plain ``(raw, classes)`` pair is a Maps without
    completeness figures: ``Maps(*pair)``."""

    raw: np.ndarray  # (N, H, W)
    classes: np.ndarray  # (N,) int
    completeness: Completeness | None = None


MethodFn = Callable[[Job, dict[str, Any]], tuple[np.ndarray, np.ndarray] | Maps]


CamWeights = Callable[[np.ndarray, np.ndarray], np.ndarray]


class _PassGroupFields(NamedTuple):
    backward: bool  # True: a backward pass (gradients); False: forward only
    images_per_pass: int  # inputs sent together in one pass
    passes: int  # how many such passes


class PassGroup(_PassGroupFields):
    """``passes`` passes of ``images_per_pass`` inputs each, backward or forward only: one group of the passes a
    method or metric cannot avoid, what the benchmark's floor and every estimate are made of.

    Still a tuple, so ``backward, images_per_pass, passes = group`` reads one; but built by keyword only, and each
    field checked, so two swapped numbers or a count where the kind of pass goes fail at once rather than price a
    request wrongly.
    """

    __slots__ = ()

    def __new__(cls, *, backward: bool, images_per_pass: int, passes: int) -> PassGroup:
        if not isinstance(backward, bool | np.bool_):
            raise TypeError(f"PassGroup's backward is True or False, not {backward!r}.")
        for field, value in (("images_per_pass", images_per_pass), ("passes", passes)):
            if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
                raise TypeError(f"PassGroup's {field} is a whole number, not {value!r}.")
            if value < 0:
                raise ValueError(f"PassGroup's {field} cannot be negative; got {value}.")
        return super().__new__(cls, bool(backward), int(images_per_pass), int(passes))

    def __getnewargs_ex__(self) -> tuple[tuple, dict[str, Any]]:
        return (), self._asdict()  # copies and pickles go through the keyword-only constructor too


# The passes a method cannot avoid for ``images`` images at ``batch_size`` on a model whose input is ``size``
# (H, W). Most costs ignore the size; Occlusion's patches depend on it.
Cost = Callable[[dict[str, Any], int, int, tuple[int, int]], list[PassGroup]]


@dataclass(frozen=True)
class Param:
    """One parameter of a method: enough for a widget, a link, a command-line option and a check.

    The type is the default's. ``low``/``high`` bound numbers (``step`` is the
    widget's increment); ``choices`` lists every allowed value instead;
    ``presets`` are the values a widget offers when the allowed range is wider.
    """

    name: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple = ()
    presets: tuple = ()
    label: str = ""  # for widgets; the name, capitalised, when empty

    @property
    def kind(self) -> type:
        return type(self.default)

    def check(self, value: Any, label: str) -> Any:
        """``value`` converted to this parameter's type; InputError with one sentence when it is not allowed."""
        try:
            converted = self.kind(value) if not isinstance(value, bool) or self.kind is bool else None
        except (TypeError, ValueError):
            converted = None
        if self.kind in (int, float) and isinstance(converted, float) and not np.isfinite(converted):
            converted = None
        if self.kind is int and converted is not None and converted != value and not isinstance(value, str):
            converted = None  # 2.5 is no number of samples
        if converted is None:
            raise self._refusal(value, label)
        if (self.choices and converted not in self.choices) or (self.low is not None and converted < self.low) or (
                self.high is not None and converted > self.high):
            raise self._refusal(value, label)
        return converted

    def _refusal(self, value: Any, label: str) -> InputError:
        return InputError(f"The {self.name} of {label} must be {self.describe()}; got {value!r}.")

    def describe(self) -> str:
        """The allowed values in words: ``an integer from 1 to 200``, ``black or blurred``."""
        if self.choices:
            return " or ".join(str(c) for c in self.choices)
        noun = {int: "an integer", float: "a number", bool: "true or false", str: "text"}[self.kind]
        number = (lambda v: f"{int(v):,}") if self.kind is int else (lambda v: f"{v:g}")
        if self.low is not None and self.high is not None:
            return f"{noun} from {number(self.low)} to {number(self.high)}"
        if self.low is not None:
            return f"{noun} of at least {number(self.low)}"
        return noun


# Two colour-blind-aware qualitative schemes, one after the other: Paul Tol's "muted" (nine colours), then
# Okabe & Ito's (eight), then four of Tol's "vibrant" (magenta, grey, blue, red): 21 colours, one
# per registered method. Methods take them in registration order. Some colours of the second scheme are close
# to one of the first (sky blue and cyan, yellow and sand); the order below gives each such pair different
# point shapes, so every method shown together differs in colour and in shape.
PALETTE = ("#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE", "#882255", "#44AA99", "#999933", "#AA4499",
           "#E69F00", "#56B4E9", "#CC79A7", "#009E73", "#0072B2", "#F0E442", "#D55E00", "#000000",
           "#EE3377", "#BBBBBB", "#0077BB", "#CC3311")
# Point shapes, by their Vega-Lite names (reports map them to Matplotlib markers), taken in registration order
# like the colours: with 19 colours and 8 shapes, no two of the first 152 methods share both.
SHAPES = ("circle", "square", "triangle-up", "diamond", "cross", "triangle-down", "triangle-left", "triangle-right")


def next_colour(name: str) -> str:
    """The colour a method registered as ``name`` takes: its earlier one, or the next in ``PALETTE``.

    Only the registration's position decides, so adding a method never changes another's colour.
    """
    if name in REGISTRY:
        return REGISTRY[name].colour
    return PALETTE[len(REGISTRY) % len(PALETTE)]


def next_shape(name: str) -> str:
    """The point shape a method registered as ``name`` takes: its earlier one, or the next in ``SHAPES``."""
    if name in REGISTRY:
        return REGISTRY[name].shape
    return SHAPES[len(REGISTRY) % len(SHAPES)]


def in_batches(backward: bool, inputs: int, batch_size: int, repeat: int = 1) -> list[PassGroup]:
    """``inputs`` inputs sent in full batches of ``batch_size`` and one partial batch for the rest, ``repeat``
    times, as ``Runtime.gradients`` sends them: the groups a cost states for one call."""
    full, rest = divmod(max(inputs, 0), batch_size)
    groups = (PassGroup(backward=backward, images_per_pass=batch_size, passes=full * repeat),
              PassGroup(backward=backward, images_per_pass=rest, passes=repeat))
    return [group for group in groups if group.images_per_pass and group.passes]


def one_pass(params: dict, images: int, batch_size: int, size: tuple[int, int]) -> list[PassGroup]:
    """One backward pass over the images (in batches): what input-gradient methods and gradient CAMs need."""
    return in_batches(True, images, batch_size)


@dataclass(frozen=True, kw_only=True)
class Method:
    """A method's description: from it come the pages' widgets, link keys, CLI options and benchmark floor.

    Built by keyword only: a dozen fields, several of the same type, are too many to keep in order by position.
    """

    name: str
    label: str
    reference: str
    run: MethodFn
    params: tuple[Param, ...] = ()
    needs_layer: bool = False
    cam_weights: CamWeights | None = None  # set for gradient CAMs: they can fill a layer grid in one pass
    cost: Cost = one_pass
    requires: Callable[[Any], str | None] | None = None  # model -> why it cannot run there, beyond needing a layer
    colour: str = PALETTE[0]  # "#RRGGBB": the method's one colour in every chart, page and report
    shape: str = SHAPES[0]  # one of SHAPES: its point shape in every chart that shows several methods
    # Set for a method whose maps claim to sum to f(x) - f(x0) and which returns Maps with their Completeness:
    # what to do when a map's gap is above the tolerance, naming the method's own parameters.
    completeness_advice: str = ""

    @property
    def reports_completeness(self) -> bool:
        return bool(self.completeness_advice)

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def unavailable(self, model: Any) -> str | None:
        """Why this method cannot run on ``model`` (a LoadedModel), or None when it can."""
        if self.needs_layer and model.cam_unavailable:
            return model.cam_unavailable
        return self.requires(model) if self.requires else None


REGISTRY: dict[str, Method] = {}


def register(name: str, label: str, reference: str, *, params: tuple[Param, ...] = (), needs_layer: bool = False,
             cam_weights: CamWeights | None = None, cost: Cost = one_pass,
             requires: Callable[[Any], str | None] | None = None,
             colour: str | None = None, shape: str | None = None,
             completeness_advice: str = "") -> Callable[[MethodFn], MethodFn]:
    """Decorate a method's function to add it, described, to the registry (and so to every page, link and CLI).

    ``colour`` ("#RRGGBB") and ``shape`` (one of ``SHAPES``) are the method's in every chart; by default the next
    ones of ``PALETTE`` and ``SHAPES``. ``completeness_advice`` declares that the method reports its completeness
    gap (it returns ``Maps`` with ``Completeness``) and says what to do when the gap is large.
    """

    def add(fn: MethodFn) -> MethodFn:
        REGISTRY[name] = Method(name=name, label=label, reference=reference, run=fn, params=tuple(params),
                                needs_layer=needs_layer, cam_weights=cam_weights, cost=cost, requires=requires,
                                colour=colour or next_colour(name), shape=shape or next_shape(name),
                                completeness_advice=completeness_advice)
        return fn

    return add


def markdown_table() -> str:
    """The registered methods as the README's Markdown table: name, call name, parameters, reference."""

    def parameters(method: Method) -> str:
        given = ([] if not method.needs_layer else ["`layer`"]) + [
            f"`{p.name}={p.default!r}` ({p.describe()})" for p in method.params]
        return ", ".join(given)

    rows = ["| method | name | parameters (default, allowed) | reference |", "| --- | --- | --- | --- |"]
    rows += [f"| {m.label} | `{m.name}` | {parameters(m)} | {m.reference} |" for m in REGISTRY.values()]
    return "\n".join(rows)


def method_names() -> list[str]:
    """Names of the registered methods, in registration order."""
    return list(REGISTRY)


def get_method(name: str) -> Method:
    if name not in REGISTRY:
        raise InputError(f"'{name}' is not an attribution method; choose one of {', '.join(REGISTRY)}.")
    return REGISTRY[name]


class Described(Protocol):
    """Anything whose settings are ``Param``s: a method, a trust metric, a ``ParamSet``."""

    @property
    def name(self) -> str: ...

    @property
    def label(self) -> str: ...

    @property
    def params(self) -> tuple[Param, ...]: ...


@dataclass(frozen=True)
class ParamSet:
    """Settings that belong to no method (feature visualisation's optimisation, a dataset's options), described
    as a method's are: what ``resolve_params`` checks values against and what ``ui.param_widgets.draw`` draws."""

    name: str  # in widget keys and link keys: <prefix><name>__<parameter>
    label: str  # in sentences: "The steps of the optimisation must be ..."
    params: tuple[Param, ...]


def resolve_params(method: Described, params: dict[str, Any]) -> dict[str, Any]:
    """Every parameter of ``method``: ``params`` checked and converted, defaults for the rest."""
    known = {p.name: p for p in method.params}
    unknown = set(params) - set(known)
    if unknown:
        takes = ", ".join(known) or "no parameters"
        raise InputError(f"'{sorted(unknown)[0]}' is not a parameter of {method.name}; it takes {takes}.")
    return {name: known[name].check(params[name], method.label) if name in params else known[name].default
            for name in known}
