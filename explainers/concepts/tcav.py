"""Testing with Concept Activation Vectors (Kim et al. 2018), with a significance test that respects how TCAV fails.

A concept is a folder of images showing it. At a chosen layer a linear classifier (scikit-learn's logistic
regression) separates the concept's activations from random images'; the unit normal of its boundary, pointing to the
concept, is the concept activation vector (CAV). A class's TCAV score is the share of its images whose class logit
rises along the CAV: the directional derivative, the gradient of the logit with respect to the layer's activations
dotted with the CAV, is positive. Activations are flattened (h x w x channels), as in TCAV, Captum and Xplique: the
CAV then lives where the layer's gradient does, and a concept that sits in one place (a mark in a corner) keeps its
place, which a spatial average would lose.

How TCAV fails, and the test used here instead of a t-test over runs. The concept set is fixed across runs, so its
own sampling noise (how its 50 images happen to differ from the random pool) pulls every run's CAV the same way: a
folder of plain noise scored 0.88 in every run against 0.26 for random-vs-random, and a naive t-test over runs called
it significant. Worse, when the class logit's gradient barely varies between images (a layer followed by global
pooling and a dense head: there it is the same for every image), each CAV scores 0 or 1, so any set's score is a coin
flip fixed for all runs. The test therefore compares the concept with pseudo-concepts:

- a pseudo-concept is a set of the concept's size drawn at random from the random pool, put in the concept's role and
  treated exactly as the concept is (the same runs, the same rule for its negatives and its held-out images);
- run ``r`` orders all the images at random once; a set's negatives are the first n pool images outside it in that
  order (for the concept: any pool image), and its held-out images (``HELD_OUT``) the last of its own and of its
  negatives in that order. The pool must hold at least twice the concept's images: a set and its negatives;
- the statistic is the mean directional derivative over runs and the class's images (logit change per unit step along
  the CAV), which still tells a concept from noise when every score is 0 or 1; two-sided, as a concept that lowers the
  logit matters as much: the distance of a set's statistic from the mean of all sets' (concept's and pseudo-concepts');
- p = (1 + pseudo-concepts at least as far) / (1 + pseudo-concepts) (Phipson and Smyth 2010);
- p-values are corrected for the number of tests (concepts x classes) by Holm's step-down method (the same guarantee
  as Bonferroni's, the family-wise error at most ``alpha``, and never less power). By default there are just enough
  pseudo-concepts (``needed_pseudo_concepts``) for the smallest attainable p-value, 1 / (1 + pseudo-concepts), to fall
  below the strictest corrected threshold, ``alpha`` / tests: 1,000 for 5 concepts x 10 classes at 0.05.

Why the null is valid. When the concept's images are no different from the random ones, the concept and each
pseudo-concept are a fixed sample of n images tested against negatives from the rest: the concept against any pool
image, a pseudo-concept against the pool without its own images, p - n of them. Its negatives thus vary a little more
(in a linear view, the variance of set-minus-negatives is 1/n + 1/(p - n) against the concept's 1/n + 1/p), so the
null is, if anything, wider than the concept's spread and the test errs on the safe side; it needs no assumption on the
statistic's distribution. A simulation (ReLU activations, constant and varying gradients, 500 draws, 39
pseudo-concepts) gave p <= 0.05 in 4.8% and 4.4% of draws with a pool twice the concept, 4% with five times. Mixing
the concept's own images into the pseudo-concepts would make the test exact, but then a pseudo-concept holding a few
more concept images than its negatives learns the concept too: on a bright planted mark that cost the concept its
significance.

Each CAV's accuracy on its held-out images is recorded: a concept whose CAV cannot tell it from random images on
images it was not fitted on (``MIN_CAV_ACCURACY``) is reported as not separable and never called significant.

Every fit is made in the span of the activations it can use (the concept's and the random images'): an L2-penalised
linear classifier's weights lie in the span of its training points, so fitting in an orthonormal basis of that span
gives the same CAV as fitting on the flattened activations, in a few hundred dimensions instead of tens of thousands.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from explainers.errors import InputError, counted, echo
from explainers.inputs.data_roots import check_path, inside
from explainers.inputs.images import IMAGE_SUFFIXES, ImageLike, decode_image
from explainers.methods.registry import Param, ParamSet, PassGroup, in_batches, resolve_params
from explainers.models.loading import LoadedModel
from explainers.runtime.targets import TOP1

CONCEPTS_FILE = "concepts.json"
MIN_CONCEPT_IMAGES = 10  # fewer cannot both fit a CAV and leave held-out images to check it on
HELD_OUT = 0.25  # share of a set's images, and of its negatives, kept out of its fit to measure the CAV's accuracy
MIN_CAV_ACCURACY = 0.6  # held-out accuracy below which a CAV is reported as not telling the concept from random images
# The logistic regression's C, on activations scaled to a mean norm of 1 (so the same on any layer): weak, so the CAV is
# near the widest-margin direction. A strong penalty gives about the difference of the sets' means, which for a random
# set follows the activations' largest variations (overall brightness, shared by every position), just what a layer
# before global pooling sums: on the planted mark at such a layer the concept stood 3 null spreads from the
# pseudo-concepts' mean with C = 1, 7 with 1,000 and 10 with 10,000, the fits taking 1.4 and 1.9 times as long.
REGULARISATION = 1000.0
NULL_BAND = (2.5, 97.5)  # percentiles of the pseudo-concepts' scores drawn as the null's spread
CORRECTION = "holm"
FIT_PROBES = 8  # fits timed for the estimate

RUNS = Param("runs", 10, "runs per concept and per pseudo-concept, each with its own random negatives and held-out "
                         "images; the concept's result is their mean", 1, 1000, presets=(5, 10, 20, 50), label="Runs")
PSEUDO_CONCEPTS = Param(
    "pseudo_concepts", 0, "random sets of the concept's size put in its role, the null the concept is tested against; "
                          "0 takes just enough for the smallest p-value to pass the corrected threshold "
                          "(tests / alpha)", 0, 100_000, label="Pseudo-concepts")
CONCEPT_IMAGES = Param("concept_images", 50, "images drawn with the seed from each concept folder (a folder with "
                                             "fewer gives all it has)", MIN_CONCEPT_IMAGES, 10_000,
                       presets=(20, 50, 100, 200), label="Images per concept")
CLASS_IMAGES = Param("class_images", 100, "images of each class drawn with the seed to score the concepts on", 1,
                     100_000, presets=(20, 50, 100, 500), label="Images per class")
RANDOM_IMAGES = Param("random_images", 500, "random images drawn with the seed from the random folder, or from the "
                                            "dataset's other images", 2, 100_000, presets=(100, 200, 500, 1000),
                      label="Random images")
ALPHA = Param("alpha", 0.05, "the family-wise error rate over all concepts x classes (Holm's correction)", 0.0001, 0.5,
              label="Alpha")
SEED = Param("seed", 0, "draws the images, the pseudo-concepts and each run's negatives: the same seed, the same "
                        "answer", 0, 2**31 - 1, label="Seed")
TCAV = ParamSet("tcav", "the concept test",
                (RUNS, PSEUDO_CONCEPTS, CONCEPT_IMAGES, CLASS_IMAGES, RANDOM_IMAGES, ALPHA, SEED))


@dataclass(frozen=True, kw_only=True)
class TcavSettings:
    """The concept test's settings, checked (``tcav_settings``)."""

    runs: int
    pseudo_concepts: int  # 0: ``needed_pseudo_concepts`` for the number of tests
    concept_images: int
    class_images: int
    random_images: int
    alpha: float
    seed: int


def tcav_settings(**given: Any) -> TcavSettings:
    """``TCAV``'s parameters as given (the rest at their defaults), each checked; InputError with one sentence."""
    return TcavSettings(**resolve_params(TCAV, given))


def needed_pseudo_concepts(tests: int, alpha: float) -> int:
    """The fewest pseudo-concepts whose smallest attainable p-value, 1 / (1 + pseudo-concepts), is below the strictest
    corrected threshold, ``alpha / tests``: 80 for 4 tests at 0.05, 1,000 for 50."""
    return math.floor(tests / alpha + 1e-9)


@dataclass(frozen=True)
class ImageSet:
    """Images of one kind (a concept's, the random pool, a class's), at the model's input size, and where they came
    from (the names as the user gave them: file names in a folder, paths in a dataset)."""

    name: str
    pixels: np.ndarray  # (N, H, W, 3) uint8
    sources: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.pixels)


@dataclass(frozen=True)
class ClassImages:
    """One class to score: its output index and name, and its images."""

    index: int
    name: str
    images: ImageSet


@dataclass(frozen=True)
class FolderImages:
    """A folder's images, decoded (at most the number asked for, drawn with the seed), and those that could not be."""

    images: list[np.ndarray]
    names: list[str]
    skipped: list[str]  # one sentence each


def read_image_folder(folder: str | Path, limit: int, seed: int, shown: str | None = None,
                      roots: Sequence[Path] | None = None) -> FolderImages:
    """Up to ``limit`` images of ``folder`` (its own files with an image suffix), drawn with ``seed`` when it holds
    more, decoded; a file that cannot be decoded is skipped and another drawn in its place. ``shown`` names the
    folder in messages (default: as given). With ``roots`` (a server's data roots), the folder and every file read
    must resolve inside them: a link leading out is skipped. InputError when it is no folder."""
    path = Path(folder)
    label = echo(shown if shown is not None else folder)
    if not check_path(path, label).is_dir():
        raise InputError(f"'{label}' is not a folder.")
    if roots is not None and not inside(path.resolve(), roots):
        raise InputError(f"'{label}' lies outside the folders this server may read.")
    try:
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and (roots is None or inside(p.resolve(), roots)))
    except OSError as error:
        raise InputError(f"'{label}' cannot be read: {error.strerror or error}.") from None
    order = np.random.default_rng(seed).permutation(len(files))
    images: list[np.ndarray] = []
    names: list[str] = []
    skipped: list[str] = []
    for index in order:
        if len(images) == limit:
            break
        try:
            images.append(decode_image(files[index], f"{label}/{files[index].name}"))
            names.append(files[index].name)
        except InputError as error:
            skipped.append(str(error))
    return FolderImages(images, names, skipped)


def image_set(model: LoadedModel, name: str, images: Sequence[ImageLike], sources: Sequence[str]) -> ImageSet:
    """``images`` resized to ``model``'s input, as one ``ImageSet``."""
    pixels = model.resize(images) if len(images) else np.zeros((0, *model.input_size, 3), np.uint8)
    return ImageSet(name, pixels, tuple(sources))


def check_layer(model: LoadedModel, layer: str | None) -> str:
    """``layer`` (default: the model's own CAM layer) when it is a layer of ``model`` with a spatial output;
    InputError with one sentence otherwise."""
    if model.cam_unavailable:
        raise InputError(model.cam_unavailable)
    if layer is None:
        layer = model.default_cam_layer
    if layer not in model.conv_layers:
        raise InputError(f"'{echo(layer)}' is not a layer of {model.display_name} with a spatial output; "
                         "`python -m explainers layers` lists them.")
    return str(layer)


def check_concept(concept: ImageSet) -> None:
    """InputError when a concept has too few images to learn a CAV from and check it on held-out ones."""
    if len(concept) < MIN_CONCEPT_IMAGES:
        found = "no image" if len(concept) == 0 else f"only {counted(len(concept), 'image')}"
        raise InputError(f"The concept '{echo(concept.name)}' has {found}; a concept needs at least "
                         f"{MIN_CONCEPT_IMAGES} to learn its direction from and check it on images it was not fitted "
                         "on.")


@dataclass(frozen=True)
class TcavPlan:
    """What a TCAV run will do, checked before any pass: the layer, the concepts, the random pool, the classes, the
    settings, and how many tests and pseudo-concepts that makes."""

    layer: str
    concepts: tuple[ImageSet, ...]
    random: ImageSet
    classes: tuple[ClassImages, ...]
    settings: TcavSettings
    random_source: str  # "folder" or "dataset"
    tests: int = field(init=False)
    pseudo_concepts: int = field(init=False)

    def __post_init__(self) -> None:
        tests = len(self.concepts) * len(self.classes)
        given = self.settings.pseudo_concepts
        object.__setattr__(self, "tests", tests)
        object.__setattr__(self, "pseudo_concepts", given or needed_pseudo_concepts(tests, self.settings.alpha))

    @property
    def fits(self) -> int:
        """CAVs fitted in all: every concept's and every pseudo-concept's, once per run."""
        return len(self.concepts) * (1 + self.pseudo_concepts) * self.settings.runs

    @property
    def smallest_p(self) -> float:
        return 1.0 / (1 + self.pseudo_concepts)


def plan_tcav(model: LoadedModel, layer: str | None, concepts: Sequence[ImageSet], random: ImageSet,
              classes: Sequence[ClassImages], settings: TcavSettings, random_source: str = "folder") -> TcavPlan:
    """Check a TCAV request before any pass: InputError with one sentence for an unknown layer, a concept with too
    few images, two concepts of one name, too few random images, no class, or too few pseudo-concepts to reach the
    corrected threshold."""
    layer = check_layer(model, layer)
    if not concepts:
        raise InputError("Give at least one concept: a name and a folder of images showing it.")
    names = [concept.name for concept in concepts]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InputError(f"Two concepts are called '{echo(twice[0])}'; give each concept its own name.")
    for concept in concepts:
        check_concept(concept)
    largest = max(len(concept) for concept in concepts)
    if len(random) < 2 * largest:
        raise InputError(f"The random images ({random.name}) give {counted(len(random), 'image')}, fewer than the "
                         f"{2 * largest} needed: twice the {largest} of the largest concept, as each pseudo-concept is "
                         "drawn from them and tested against others of them (add random images or lower the images "
                         "per concept).")
    if not classes:
        raise InputError("There is no class to score: the dataset has no image of the classes asked for.")
    plan = TcavPlan(layer, tuple(concepts), random, tuple(classes), settings, random_source)
    needed = needed_pseudo_concepts(plan.tests, settings.alpha)
    if plan.pseudo_concepts < needed:
        raise InputError(f"With {plan.pseudo_concepts:,} pseudo-concepts the smallest p-value is "
                         f"{plan.smallest_p:.2g}, not below the corrected threshold {settings.alpha:g} / "
                         f"{counted(plan.tests, 'test')}; give at least {needed:,} (or 0 for that many).")
    return plan


# --- the statistics: activations and gradients in, CAVs and p-values out (NumPy and scikit-learn only) ---


@dataclass(frozen=True)
class SpanBasis:
    """An orthonormal basis of the span of a concept's and the random pool's flattened activations, kept implicitly:
    ``coordinates`` are the images' coordinates in it, and ``project`` takes any vector there (a gradient)."""

    activations: np.ndarray  # (N, D) flattened, scaled to a mean norm of 1
    directions: np.ndarray  # (N, r): basis = (activations.T @ directions), orthonormal
    coordinates: np.ndarray  # (N, r)

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """``(M, r)`` the coordinates of ``(M, D)`` vectors' components in the span."""
        return (vectors.astype(np.float32) @ self.activations.T).astype(np.float64) @ self.directions

    def full(self, cavs: np.ndarray) -> np.ndarray:
        """``(M, D)`` vectors given by their coordinates ``(M, r)``."""
        return (cavs @ self.directions.T).astype(np.float32) @ self.activations


def span_basis(activations: np.ndarray) -> SpanBasis:
    """The basis of ``activations``' (N, D) span, from the eigenvectors of their Gram matrix: an SVD of the N x D
    matrix costs minutes on a large layer, the Gram matrix seconds. Raises InputError when every activation is zero."""
    flat = activations.reshape(len(activations), -1).astype(np.float32)
    scale = float(np.linalg.norm(flat, axis=1).mean())
    if not scale > 0:
        raise InputError("Every concept and random image gives the layer zero activations, so no concept can be "
                         "learnt there; choose another layer.")
    flat = flat / scale
    values, vectors = np.linalg.eigh((flat @ flat.T).astype(np.float64))
    kept = values > values.max() * 1e-6  # below, float32 rounding of the Gram matrix is all there is
    values, vectors = values[kept], vectors[:, kept]
    roots = np.sqrt(values)
    return SpanBasis(flat, vectors / roots, vectors * roots)


@dataclass(frozen=True)
class CavDraws:
    """The CAVs of one concept (set 0) and of its pseudo-concepts (sets 1..M), one per run, and their held-out
    accuracies."""

    basis: SpanBasis
    cavs: np.ndarray  # (1 + M, runs, r) float32 unit vectors, in the basis' coordinates
    accuracy: np.ndarray  # (1 + M, runs)


@dataclass(frozen=True)
class FittedCav:
    """A fitted CAV: the unit normal of the classifier's boundary, pointing to the concept, and where the boundary
    lies along it (an image is called the concept when ``features @ direction + offset > 0``)."""

    direction: np.ndarray  # (d,) unit, or zeros when the fit found no direction
    offset: float


def fit_cav(features: np.ndarray, is_concept: np.ndarray, seed: int) -> FittedCav:
    """A logistic regression separating ``features`` (N, d) by ``is_concept``, as a ``FittedCav``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    # liblinear: about ten times faster than lbfgs on a few hundred dimensions; its penalised intercept changes nothing
    # the span argument needs (the weights still lie in the span of the training points).
    classifier = LogisticRegression(C=REGULARISATION, solver="liblinear", max_iter=1000, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(features, is_concept.astype(int))
    weights = classifier.coef_[0].astype(np.float64)
    norm = float(np.linalg.norm(weights))
    if norm == 0:
        return FittedCav(weights, 0.0)
    return FittedCav(weights / norm, float(classifier.intercept_[0]) / norm)


def draw_cavs(concept: np.ndarray, pool: np.ndarray, runs: int, pseudo_concepts: int, seed: int,
              progress: Callable[[int], None] | None = None) -> CavDraws:
    """CAVs of the concept (activations ``concept`` (n, ...)) against random images (``pool`` (p, ...), p >= 2 n) and
    of ``pseudo_concepts`` random sets of n drawn from the pool, in ``runs`` runs (see the module's docstring): in run
    r a set's negatives are the first n pool images outside it in the run's random order, its held-out images the
    last ``HELD_OUT`` of its own and of its negatives in that order. ``progress(fits)`` is called after each set's
    runs."""
    n, p = len(concept), len(pool)
    if p < 2 * n:
        raise ValueError("the pool must hold at least twice as many images as the concept")
    basis = span_basis(np.concatenate([concept.reshape(n, -1), pool.reshape(p, -1)]))
    rng = np.random.default_rng(seed)
    sets = np.empty((1 + pseudo_concepts, n), np.int64)
    sets[0] = np.arange(n)  # the concept's images come first in the stacked activations
    for index in range(1, 1 + pseudo_concepts):
        sets[index] = n + rng.choice(p, n, replace=False)  # the pool's images follow the concept's
    orders = [rng.permutation(n + p) for _ in range(runs)]
    held = max(1, round(n * HELD_OUT))
    labels = np.r_[np.ones(n - held, bool), np.zeros(n - held, bool)]
    held_labels = np.r_[np.ones(held, bool), np.zeros(held, bool)]
    # float32: 1,001 sets x 10 runs x a span of 550 is 22 MB a concept, and no score needs more digits
    cavs = np.zeros((1 + pseudo_concepts, runs, basis.coordinates.shape[1]), np.float32)
    accuracy = np.zeros((1 + pseudo_concepts, runs))
    members = np.zeros(n + p, bool)
    in_pool = np.arange(n + p) >= n
    for index, chosen in enumerate(sets):
        members[:] = False
        members[chosen] = True
        for run, order in enumerate(orders):
            inside, outside = order[members[order]], order[~members[order] & in_pool[order]][:n]
            train = np.r_[inside[: n - held], outside[: n - held]]
            test = np.r_[inside[n - held :], outside[n - held :]]
            fitted = fit_cav(basis.coordinates[train], labels, seed + run)
            cavs[index, run] = fitted.direction
            called = basis.coordinates[test] @ fitted.direction + fitted.offset > 0
            accuracy[index, run] = np.mean(called == held_labels)
        if progress is not None:
            progress(runs)
    return CavDraws(basis, cavs, accuracy)


@dataclass(frozen=True, kw_only=True)
class SetStatistics:
    """For one class: each set's (concept's and pseudo-concepts') scores and mean directional derivatives per run."""

    scores: np.ndarray  # (1 + M, runs) share of the class's images whose logit rises along the set's CAV
    derivatives: np.ndarray  # (1 + M, runs) mean directional derivative over the class's images


def set_statistics(draws: CavDraws, gradients: np.ndarray) -> SetStatistics:
    """Scores and mean directional derivatives of every set's CAVs for a class's logit gradients ``(N, h, w, K)``."""
    projected = draws.basis.project(gradients.reshape(len(gradients), -1))  # (N, r)
    sets, runs, rank = draws.cavs.shape
    derivatives = (projected @ draws.cavs.reshape(-1, rank).T).reshape(len(gradients), sets, runs)
    return SetStatistics(scores=(derivatives > 0).mean(axis=0), derivatives=derivatives.mean(axis=0))


def permutation_p_value(statistics: np.ndarray) -> float:
    """Two-sided p-value of set 0 among sets 1..M: how many sets lie at least as far from the mean of all sets'
    statistic as set 0 does, plus one, over M + 1."""
    distance = np.abs(statistics - statistics.mean())
    return float((1 + np.count_nonzero(distance[1:] >= distance[0] * (1 - 1e-12))) / len(statistics))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values: the i-th smallest times (m - i), made non-decreasing, at most 1."""
    p = np.asarray(p_values, np.float64)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order]))
    result = np.empty_like(p)
    result[order] = adjusted
    return result


# --- running it on a model ---


@dataclass(frozen=True, kw_only=True)
class ConceptScore:
    """One concept's test on one class. ``score`` and ``derivative`` are means over runs of the concept's CAVs; the
    ``null_*`` fields describe its pseudo-concepts' (each one's mean over runs)."""

    class_name: str
    concept: str
    score: float  # share of the class's images whose logit rises along the CAV
    score_spread: float  # standard deviation over runs
    null_score_mean: float
    null_score_spread: float  # standard deviation over pseudo-concepts
    null_score_low: float  # NULL_BAND's percentiles of the pseudo-concepts' scores
    null_score_high: float
    derivative: float  # mean directional derivative: the tested statistic
    null_derivative_mean: float
    null_derivative_spread: float
    p_value: float  # uncorrected
    p_adjusted: float  # Holm-corrected over every concept x class
    significant: bool  # p_adjusted <= alpha and the CAV separates the concept from random images
    runs: int
    class_images: int
    cav_accuracy: float
    separable: bool


@dataclass(frozen=True, kw_only=True)
class ConceptCav:
    """How well a concept's CAVs tell it from random images, on held-out images (mean and spread over runs)."""

    name: str
    images: int
    cav_accuracy: float
    cav_accuracy_spread: float
    separable: bool
    sources: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class TcavResult:
    """A TCAV run's results: one ``ConceptScore`` per class x concept, one ``ConceptCav`` per concept."""

    layer: str
    scores: list[ConceptScore]
    concepts: list[ConceptCav]
    settings: TcavSettings
    pseudo_concepts: int
    tests: int
    random_images: int
    random_source: str
    seconds: float

    @property
    def smallest_p(self) -> float:
        return 1.0 / (1 + self.pseudo_concepts)

    def score(self, class_name: str, concept: str) -> ConceptScore:
        """The test of ``concept`` on ``class_name``."""
        for item in self.scores:
            if item.class_name == class_name and item.concept == concept:
                return item
        raise KeyError(f"no score for {concept!r} on {class_name!r}")


class WorkCounter:
    """Work done so far out of ``total``, told to ``on_progress(done, total)`` (when given) as each part ends:
    called with the amount of a part that just ended."""

    def __init__(self, total: int, on_progress: Callable[[int, int], None] | None) -> None:
        self.total, self.done, self.on_progress = total, 0, on_progress

    def __call__(self, amount: int) -> None:
        self.done += amount
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)


def layer_activations(model: LoadedModel, pixels: np.ndarray, layer: str, batch_size: int) -> np.ndarray:
    """``(N, h, w, K)`` the layer's activations for ``pixels`` (N, H, W, 3) uint8 at the input size: forward passes."""
    x = model.to_input(pixels)
    return model.runtime.forward(x, np.full(len(x), TOP1, np.int32), (layer,), batch_size=batch_size).activations[0]


def logit_gradients(model: LoadedModel, pixels: np.ndarray, class_index: int, layer: str,
                    batch_size: int) -> np.ndarray:
    """``(N, h, w, K)`` the gradient of class ``class_index``'s logit with respect to the layer's activations, for each
    image: one backward pass per batch (``Runtime.gradients``)."""
    x = model.to_input(pixels)
    targets = np.full(len(x), class_index, np.int32)
    return model.runtime.gradients(x, targets, (layer,), batch_size=batch_size).layer_gradients[0]


def directional_derivatives(model: LoadedModel, pixels: np.ndarray, class_index: int, layer: str, cav: np.ndarray,
                            batch_size: int = 32) -> np.ndarray:
    """``(N,)`` each image's class logit's derivative along ``cav`` (a flattened (h * w * K,) direction)."""
    gradients = logit_gradients(model, pixels, class_index, layer, batch_size)
    return gradients.reshape(len(gradients), -1).astype(np.float64) @ np.asarray(cav, np.float64)


def run_tcav(model: LoadedModel, plan: TcavPlan, batch_size: int = 64,
             on_progress: Callable[[int, int], None] | None = None) -> TcavResult:
    """Test every concept of ``plan`` on every class: its score, the pseudo-concepts' spread, and a corrected p-value.

    ``on_progress(done, total)`` counts images through passes and CAVs fitted.
    """
    start = time.perf_counter()
    settings = plan.settings
    advance = WorkCounter(_work(plan), on_progress)
    pool = layer_activations(model, plan.random.pixels, plan.layer, batch_size)
    advance(len(plan.random))
    draws: list[CavDraws] = []
    for index, concept in enumerate(plan.concepts):
        activations = layer_activations(model, concept.pixels, plan.layer, batch_size)
        advance(len(concept))
        # Each concept's own stream of draws (from the seed and its position), so adding a concept changes no other's.
        seed = int(np.random.SeedSequence([settings.seed, index]).generate_state(1)[0])
        draws.append(draw_cavs(activations, pool, settings.runs, plan.pseudo_concepts,
                               seed, advance))
    separable = [float(d.accuracy[0].mean()) >= MIN_CAV_ACCURACY for d in draws]
    measured: list[tuple[ClassImages, int, SetStatistics]] = []
    for item in plan.classes:
        gradients = logit_gradients(model, item.images.pixels, item.index, plan.layer, batch_size)
        advance(len(item.images))
        measured += [(item, index, set_statistics(d, gradients)) for index, d in enumerate(draws)]
    p_values = [permutation_p_value(statistics.derivatives.mean(axis=1)) for _, _, statistics in measured]
    adjusted = holm(p_values)
    scores = [
        _concept_score(item, plan.concepts[index].name, statistics, p, q, settings, draws[index], separable[index])
        for (item, index, statistics), p, q in zip(measured, p_values, adjusted)
    ]
    concepts = [ConceptCav(name=concept.name, images=len(concept), cav_accuracy=float(d.accuracy[0].mean()),
                           cav_accuracy_spread=float(d.accuracy[0].std()), separable=ok, sources=concept.sources)
                for concept, d, ok in zip(plan.concepts, draws, separable)]
    return TcavResult(layer=plan.layer, scores=scores, concepts=concepts, settings=settings,
                      pseudo_concepts=plan.pseudo_concepts, tests=plan.tests, random_images=len(plan.random),
                      random_source=plan.random_source, seconds=time.perf_counter() - start)


def _concept_score(item: ClassImages, concept: str, statistics: SetStatistics, p_value: float, p_adjusted: float,
                   settings: TcavSettings, draws: CavDraws, separable: bool) -> ConceptScore:
    null_scores = statistics.scores[1:].mean(axis=1)
    null_derivatives = statistics.derivatives[1:].mean(axis=1)
    low, high = np.percentile(null_scores, NULL_BAND)
    return ConceptScore(
        class_name=item.name, concept=concept,
        score=float(statistics.scores[0].mean()), score_spread=float(statistics.scores[0].std()),
        null_score_mean=float(null_scores.mean()), null_score_spread=float(null_scores.std()),
        null_score_low=float(low), null_score_high=float(high),
        derivative=float(statistics.derivatives[0].mean()),
        null_derivative_mean=float(null_derivatives.mean()), null_derivative_spread=float(null_derivatives.std()),
        p_value=p_value, p_adjusted=float(p_adjusted), significant=bool(p_adjusted <= settings.alpha and separable),
        runs=settings.runs, class_images=len(item.images), cav_accuracy=float(draws.accuracy[0].mean()),
        separable=separable)


def _work(plan: TcavPlan) -> int:
    """Units of ``run_tcav``'s progress: images through passes, and CAVs fitted."""
    images = len(plan.random) + sum(len(c) for c in plan.concepts) + sum(len(c.images) for c in plan.classes)
    return images + plan.fits


def tcav_passes(plan: TcavPlan, batch_size: int) -> list[PassGroup]:
    """The passes ``run_tcav`` sends: forward over the random and the concept images, backward over each class's."""
    groups = in_batches(False, len(plan.random), batch_size)
    for concept in plan.concepts:
        groups += in_batches(False, len(concept), batch_size)
    for item in plan.classes:
        groups += in_batches(True, len(item.images), batch_size)
    return groups


def seconds_per_fit(plan: TcavPlan) -> float:
    """Measured seconds of one CAV fit of the plan's size: ``FIT_PROBES`` fits on random features shaped as the run's
    are (its training images, the span's dimension) and like them in what sets liblinear's iterations: scaled to a
    mean norm of 1, with variances falling off as an activation basis' do (isotropic features fit 2.4 times faster
    than the digits CNN's, which this matches within a tenth)."""
    n = max(len(c) for c in plan.concepts)
    held = max(1, round(n * HELD_OUT))
    rank = n + len(plan.random)  # the span's dimension at most
    spectrum = 1.0 / np.arange(1, rank + 1)
    features = np.random.default_rng(0).normal(size=(2 * (n - held), rank)) * spectrum
    labels = np.r_[np.ones(n - held, bool), np.zeros(n - held, bool)]
    features[labels, 0] += spectrum[0]  # a concept shows along some direction
    features /= np.linalg.norm(features, axis=1).mean()
    fit_cav(features, labels, 0)  # untimed: the first fit imports scikit-learn
    start = time.perf_counter()
    for probe in range(FIT_PROBES):
        fit_cav(features, labels, probe)
    return (time.perf_counter() - start) / FIT_PROBES


def tcav_seconds(model: LoadedModel, plan: TcavPlan, batch_size: int = 64) -> float:
    """About how many seconds ``run_tcav`` takes: its passes at the model's measured pass cost, and its fits at the
    measured cost of one (NumPy's projections are left out: they are a small part on the models measured)."""
    from explainers.estimates import passes_seconds

    return passes_seconds(model, tcav_passes(plan, batch_size)) + plan.fits * seconds_per_fit(plan)


# --- writing it ---


def result_json(result: TcavResult) -> dict[str, Any]:
    """``concepts.json``'s content: ``{"layer", "scores": {class: {concept: {score, p_value, significant, ...}}}}``
    and what the test was (settings, correction, pseudo-concepts, smallest p-value, each concept's CAV accuracy)."""
    scores: dict[str, dict[str, dict[str, Any]]] = {}
    for item in result.scores:
        record = {key: value for key, value in asdict(item).items() if key not in ("class_name", "concept")}
        scores.setdefault(item.class_name, {})[item.concept] = record
    return {
        "layer": result.layer,
        "scores": scores,
        "concepts": {c.name: {"images": c.images, "cav_accuracy": c.cav_accuracy,
                              "cav_accuracy_spread": c.cav_accuracy_spread, "separable": c.separable,
                              "sources": list(c.sources)} for c in result.concepts},
        "test": {"statistic": "mean directional derivative, two-sided, against pseudo-concepts",
                 "correction": CORRECTION, "alpha": result.settings.alpha, "tests": result.tests,
                 "pseudo_concepts": result.pseudo_concepts, "smallest_p": result.smallest_p,
                 "min_cav_accuracy": MIN_CAV_ACCURACY, "null_band_percentiles": list(NULL_BAND)},
        "random": {"source": result.random_source, "images": result.random_images},
        "settings": asdict(result.settings),
        "seconds": result.seconds,
    }


def write_concepts_json(result: TcavResult, out: Path) -> Path:
    """``out/concepts.json`` (``result_json``); the path written."""
    import json

    path = Path(out) / CONCEPTS_FILE
    path.write_text(json.dumps(result_json(result), indent=2))
    return path


@dataclass(frozen=True)
class DatasetDraw:
    """Which images of a dataset listing a TCAV run uses, as positions in the listing."""

    class_rows: dict[int, np.ndarray]  # per class index: up to ``class_images`` of its images
    random_rows: np.ndarray  # the random pool drawn from the dataset; empty when the random images come from a folder


def draw_from_dataset(true: Sequence[int], classes: Sequence[int], class_images: int, random_images: int, seed: int,
                      random_from_dataset: bool) -> DatasetDraw:
    """Draw, with ``seed``, up to ``class_images`` images of each class in ``classes`` (their true class, the folder)
    and, when ``random_from_dataset``, up to ``random_images`` random images from the dataset's other images.

    The random pool is drawn from every class, the classes under test included, and never holds an image being
    scored: one pool for all classes means one set of CAVs for all of them (a pool without the class under test would
    fit every concept again per class), and TCAV's random images are meant to be generic images, not "anything but
    this class"; the class's share of the pool is its share of the dataset. A concept common in the dataset is then
    common in the pool too, and a CAV cannot learn what the negatives also show: with half the pool carrying the
    planted mark, its CAV told it apart in 68% of held-out images and nothing came out significant; with a tenth, the
    test found it. Give a random folder when the concept may be frequent.
    """
    true_classes = np.asarray(true)
    rng = np.random.default_rng(seed)
    class_rows = {int(c): np.sort(rng.permutation(np.flatnonzero(true_classes == c))[:class_images]) for c in classes}
    if not random_from_dataset:
        return DatasetDraw(class_rows, np.zeros(0, np.int64))
    scored = np.concatenate([rows for rows in class_rows.values()] + [np.zeros(0, np.int64)])
    others = np.setdiff1d(np.arange(len(true_classes)), scored)
    return DatasetDraw(class_rows, np.sort(rng.permutation(others)[:random_images]))


def resolve_classes(model: LoadedModel, given: Sequence[str | int]) -> list[int]:
    """Class indices of ``given`` names or indices (a name first: the digits' classes are called "0" to "9"), each
    once, in order; InputError with one sentence for one the model does not have."""
    chosen: list[int] = []
    for item in given:
        text = str(item).strip()
        if text in model.class_names:
            index = model.class_names.index(text)
        elif text.isdigit() and int(text) < len(model.class_names):
            index = int(text)
        else:
            raise InputError(f"'{echo(text)}' is neither a class name of {model.display_name} nor a class index "
                             f"(0 to {len(model.class_names) - 1}).")
        if index not in chosen:
            chosen.append(index)
    return chosen


@dataclass(frozen=True)
class DatasetImages:
    """What a TCAV run takes from a labelled dataset: each class's images, and the random pool when it is drawn from
    the dataset (None when it comes from a folder), with the images that could not be read."""

    classes: list[ClassImages]
    random: ImageSet | None
    skipped: list[tuple[str, str]]  # (path, why)
    unknown_folders: list[str]  # class folders the model has no class for


def dataset_images(model: LoadedModel, data: str | Path, classes: Sequence[str | int] | None, settings: TcavSettings,
                   random_from_dataset: bool, mapping: str = "auto", roots: Sequence[Path] | None = None
                   ) -> DatasetImages:
    """``data``'s class folders (``<data>/<class>/<image>``, or a URI) for ``model``: up to ``class_images`` images of
    each class asked for (default: every class with an image) and, when ``random_from_dataset``, up to
    ``random_images`` of the others (``draw_from_dataset``), decoded. InputError for a class without images."""
    from explainers.datasets.sources import Reader, list_images

    listing = list_images(data, model, mapping, roots)
    present = sorted(set(listing.true))
    wanted = resolve_classes(model, classes) if classes else present
    missing = [model.class_names[index] for index in wanted if index not in present]
    if missing:
        raise InputError(f"The dataset '{echo(data)}' has no image of the class '{echo(missing[0])}'.")
    draw = draw_from_dataset(listing.true, wanted, settings.class_images, settings.random_images, settings.seed,
                             random_from_dataset)
    reader = Reader(listing.root, listing.remote)
    skipped = list(listing.skipped)

    def read(rows: np.ndarray, name: str) -> ImageSet:
        images, sources = [], []
        for row in rows:
            decoded = reader.decode(listing.sources[row], listing.paths[row])
            if isinstance(decoded, str):
                skipped.append((listing.paths[row], decoded))
            else:
                images.append(decoded)
                sources.append(listing.paths[row])
        return image_set(model, name, images, sources)

    class_images = [ClassImages(index, model.class_names[index], read(draw.class_rows[index],
                                                                      model.class_names[index]))
                    for index in wanted]
    random = read(draw.random_rows, f"drawn from '{echo(data)}'") if random_from_dataset else None
    return DatasetImages([item for item in class_images if len(item.images)], random, skipped,
                         list(listing.mapping.unknown))


def concept_from_folder(model: LoadedModel, name: str, folder: str | Path, settings: TcavSettings,
                        shown: str | None = None, roots: Sequence[Path] | None = None) -> tuple[ImageSet, list[str]]:
    """A concept's images from its folder (up to ``concept_images``, drawn with the seed, only inside ``roots`` when
    given), checked (``check_concept``), and the sentences of the files skipped."""
    found = read_image_folder(folder, settings.concept_images, settings.seed, shown, roots)
    concept = image_set(model, name, found.images, found.names)
    check_concept(concept)
    return concept, found.skipped


def random_from_folder(model: LoadedModel, folder: str | Path, settings: TcavSettings,
                       shown: str | None = None, roots: Sequence[Path] | None = None) -> tuple[ImageSet, list[str]]:
    """The random pool from a folder (up to ``random_images``, drawn with the seed, only inside ``roots`` when
    given), and the files skipped."""
    label = echo(shown if shown is not None else folder)
    found = read_image_folder(folder, settings.random_images, settings.seed, shown, roots)
    return image_set(model, f"'{label}'", found.images, found.names), found.skipped


def parse_concept(text: str) -> tuple[str, str]:
    """``NAME=DIR`` as (name, folder); InputError with one sentence when it is not one."""
    name, separator, folder = text.partition("=")
    if not separator or not name.strip() or not folder.strip():
        raise InputError(f"'{echo(text)}' is no concept: give NAME=DIR, a name, '=', and a folder of images showing "
                         "the concept.")
    return name.strip(), folder.strip()


@dataclass(frozen=True, kw_only=True)
class ConceptFolder:
    """A concept as the user names it: its name, its folder, and how messages show the folder (never a server path
    the user did not type)."""

    name: str
    folder: str | Path
    shown: str


@dataclass(frozen=True)
class PreparedTcav:
    """A checked TCAV plan, and what was left out reading its images: files that could not be decoded (one
    sentence each, or (path, why) from the dataset) and class folders the model has no class for."""

    plan: TcavPlan
    skipped_files: list[str]
    skipped_images: list[tuple[str, str]]
    unknown_folders: list[str]


def prepare_tcav(model: LoadedModel, data: str | Path, concepts: Sequence[ConceptFolder],
                 random: ConceptFolder | None, classes: Sequence[str | int] | None, layer: str | None,
                 settings: TcavSettings, mapping: str = "auto", roots: Sequence[Path] | None = None,
                 concept_roots: Sequence[Path] | None = None) -> PreparedTcav:
    """Read a TCAV request's images (each concept's folder, the random folder or a draw from ``data``, each class's
    images from ``data``) and check it (``plan_tcav``): what the CLI and the page both run before the estimate.
    ``roots`` bound ``data``, ``concept_roots`` the concept and random folders, when a visitor named them.
    InputError with one sentence for an unusable folder, concept, class or layer."""
    skipped: list[str] = []
    concept_sets = []
    for concept in concepts:
        found, left_out = concept_from_folder(model, concept.name, concept.folder, settings, concept.shown,
                                              concept_roots)
        concept_sets.append(found)
        skipped += left_out
    pool = None
    if random is not None:
        pool, left_out = random_from_folder(model, random.folder, settings, random.shown, concept_roots)
        skipped += left_out
    found_images = dataset_images(model, data, classes, settings, pool is None, mapping, roots)
    pool = pool if pool is not None else found_images.random
    if pool is None:
        raise AssertionError("dataset_images draws the random images when no folder gives them")
    plan = plan_tcav(model, layer, concept_sets, pool, found_images.classes, settings,
                     "folder" if random is not None else "dataset")
    return PreparedTcav(plan, skipped, found_images.skipped, found_images.unknown_folders)
