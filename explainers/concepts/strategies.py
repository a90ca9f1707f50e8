"""Strategies per class: a class's maps clustered into the distinct ways the model decides it, as SpRAy does
(Lapuschkin et al. 2019, "Unmasking Clever Hans predictors", Nat. Commun. 10:1096), with where each strategy's
mass lies, so a strategy that rests on a corner, the border or the background stands out as a possible shortcut.

Per class:

1. Each map's magnitude is averaged by area down to at most ``grid`` x ``grid`` cells (never up), then scaled to
   unit sum. Unit sum, not unit maximum: a map becomes a distribution of the evidence over the picture, so two maps
   compare by *where* their mass lies, not by how peaked they are (a diffuse map scaled to unit maximum would weigh
   far more than a sharp one), and a cluster's mean map gives the shares of mass directly. The clustering compares
   each cell's share raised to ``FEATURE_POWER`` (0.3), not the share itself: on shares, a mark that takes a fifth
   of a map's mass in four cells moves the map less than the ordinary variation of the object's evidence (a stroke
   a cell higher), so the marked maps of the demo below were no cluster of their own. A power below 1 compares
   cells by ratio more than by difference (0.2 against 0.001 counts for more than 0.15 against 0.10); the square
   root (1/2) gives the Hellinger distance between the two distributions, and the power tends to the log-ratio as
   it falls, while staying finite on the many empty cells of a Grad-CAM.
2. Affinity: a Gaussian kernel with local scaling (Zelnik-Manor & Perona 2004, "Self-tuning spectral clustering"):
   ``W_ij = exp(-d_ij^2 / (s_i s_j))`` with ``s_i`` the distance from map ``i`` to its ``r``-th nearest neighbour,
   ``r`` the ``LOCAL_SCALE_SHARE`` of the class (at least ``LOCAL_SCALE_MIN``). One bandwidth for the whole class
   fails when one strategy is tight and another diffuse, which is what a shortcut does: on the demo the marked 7s'
   maps lie close together (median squared distance 0.20 on square roots) while the clean 7s spread wide (0.39,
   cross pairs 0.52), and a bandwidth that holds the clean ones together also links them to the marked. Scaled by
   each map's own neighbourhood, both are held together and the bridge between them is weak. The neighbour is a
   share of the class, not a fixed count (theirs is 7): the same class seen through a sample of 100 or 2,000 maps
   then gets the same affinity, where a fixed count would make it ever more local as the sample grows.
   SpRAy builds a k-nearest-neighbour graph instead; a 0/1 kNN graph (``sqrt(n)`` neighbours) split the demo's 7s
   well, but on synthetic maps whose blob wanders a few cells (one strategy) its eigengap chose 3 to 10 clusters,
   because it traces the continuous variation inside one strategy as a lattice with no gap in its spectrum.
3. Number of strategies: the eigengap heuristic, SpRAy's (von Luxburg 2007, sec. 8.3): with ``λ1 <= λ2 <= ...`` the
   eigenvalues of the normalised Laplacian ``I - D^-1/2 W D^-1/2``, ``k`` is the ``i`` (1 to ``MAX_CLUSTERS``) of the
   largest ``λ(i+1) - λi``. The eigenvalues are reported; a given number of clusters overrides the choice. The
   silhouette was tried as the judge and rejected: it cannot score one cluster, so it cannot say "no split", and the
   2-way split of the demo's 7s scored 0.26, below those of synthetic one-strategy classes of 25 maps (0.33, 0.35).
   How steps 1 to 3 were chosen: on a trial suite of 80 classes with a known answer (the demo's 7s by true and by
   predicted class; 10 seeds each of synthetic classes: two planted strategies, a mark beside the object on half
   the maps, one wandering strategy with little and with much noise, the tests' classes of 40, 12 and 25 maps, and
   2,000 maps of one and of two strategies), with the margin the right answer's gap over the largest other gap
   (below 1: wrong). Shares with one bandwidth, the previous design: 8 wrong, the demo's 7s among them (0.49).
   Square roots (Hellinger) with one bandwidth: 3 wrong, the 7s a near-tie (0.99); with local scaling: the 7s
   right (1.40) but 11 wrong, wandering single strategies cut (down to 0.74). A 0/1 kNN graph on square roots:
   74 wrong. The power 0.3: none wrong with one bandwidth (the 7s at 1.16) and none with local scaling, every
   margin at least 1.25 (the 7s at 1.40); powers 0.25 to 0.4 also get none wrong (0.2: one), and local shares of
   3% to 6% too (10%: one, the 7s at 1.03). The demo's other digits: one strategy each, but the 1s (by true and
   by predicted class) two, neither flagged. The 7s' split holds under per-cell noise on their maps (a factor
   exp(N(0, 0.25)), or up to 0.02 added to every cell), not under heavier (exp(N(0, 0.5)), or 0.05 added).
4. Spectral clustering as Ng, Jordan & Weiss (2002), the algorithm of scikit-learn's ``SpectralClustering``: the
   rows of the top ``k`` eigenvectors of ``D^-1/2 W D^-1/2``, scaled to unit length, clustered by k-means with the
   seed. The eigenvectors of step 3 are reused rather than computed a second time.
5. Scale: the clustering sees at most ``sample`` maps of a class, drawn with the seed; every other map joins the
   cluster whose centre (mean of its members' step-1 vectors) is nearest. ``sampled_from`` and ``clustered`` say so.

Each cluster reports its size and share of the class, its mean map, a handful of exemplars (the members nearest its
centre), the shares of its mass on the border, in each corner and in the centre and, with object masks, inside the
object; and a ``shortcut`` flag with the reason when that mass sits mostly off the object, in one corner or on the
border, or, beside other strategies, in a corner where the rest of the class puts far less (thresholds below).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from explainers.errors import InputError, counted, echo
from explainers.methods.registry import Param, ParamSet, resolve_params

if TYPE_CHECKING:
    from explainers.datasets.evaluation import Evaluation
    from explainers.trust.masks import ObjectMasks

MAX_CLUSTERS = 12  # strategies a class is split into at most: more would be more exemplar rows than anyone reads
# A class needs this many maps: with fewer, no split into strategies would be more than noise, and the eigengap
# would see fewer eigenvalues than the clusters it may choose between.
MIN_MAPS = 10
# The clustering compares each cell's share of a map raised to this power (module docstring, step 1): 0.25 to 0.4
# got every class of the trial suite right; 0.3 has the widest margins.
FEATURE_POWER = 0.3
# Each map's affinity scale is its distance to the neighbour of this rank: the share of the class's maps (step 2),
# at least LOCAL_SCALE_MIN. At 5%, a strategy holding a twentieth of the class or more sets its own members' scales
# from one another; in the trials 3% to 6% worked and 10% lost the demo's marked 7s.
LOCAL_SCALE_SHARE = 0.05
# In a small class 5% is one or two neighbours, and a map's scale would hang on its single nearest map; 5 is the 5%
# of the demo's 100 maps (a floor of 3 lowered the 12-map classes' margin to 1.23, a floor of 7 the 7s' to 1.21).
LOCAL_SCALE_MIN = 5

# Where mass is measured, as fractions of the map's side (the map covers the picture the model saw).
BORDER_BAND = 1 / 8  # the outer band: 44% of the area (1 - (3/4)^2)
CORNER_SIDE = 1 / 4  # each corner square: 1/16 of the area
CENTRE_SPAN = (1 / 4, 3 / 4)  # the centre square: the middle half of each side, 1/4 of the area
CORNERS = ("top left", "top right", "bottom left", "bottom right")

# When a cluster is flagged as a possible shortcut:
# - a third of its mass in one corner square, a sixteenth of the picture: over five times an even spread's 1/16,
#   where a map of an object in frame puts almost none (a corner mark, blurred to a CAM's coarse cells, spills out
#   of the square, so "most" of the mass would miss it);
CORNER_SHARE = 1 / 3
# - or, when the class has other strategies, an eighth of its mass in one corner square (twice an even spread's)
#   where the rest of the class puts at most a third as much: a mark on some of a class's images (a watermark, a
#   tag) takes only part of their maps, the digit or object the rest; on the known-shortcut demo the marked 7s put
#   17% of their Grad-CAM in the mark's corner and the clean 7s 1%.
CORNER_NOTABLE = 1 / 8
CORNER_CONTRAST = 3.0
# - three quarters of its mass on the border band, which holds 44% of an even spread's;
BORDER_SHARE = 3 / 4
# - with object masks, more than half of its mass off the object while the object holds less than 1.5 times its
#   share of the area: a map of a thin object (a digit's strokes) that only blurs past its edges is still denser on
#   the object than around it, and is not flagged.
OFF_OBJECT_SHARE = 1 / 2
MIN_OBJECT_LIFT = 1.5

CLUSTERS = Param("clusters", 0, "strategies per class: 0 chooses by the eigengap of the normalised Laplacian", 0,
                 MAX_CLUSTERS, presets=(0, 2, 3, 4), label="Strategies per class")
GRID = Param("grid", 16, "cells a side each map is averaged down to before clustering (a smaller map keeps its own)",
             2, 64, presets=(8, 16, 32), label="Grid")
SAMPLE = Param("sample", 2000, "maps per class the clustering sees, drawn with the seed; the others join the nearest "
                               "cluster's centre", 50, 20_000, presets=(500, 1000, 2000, 5000), label="Maps clustered")
EXEMPLARS = Param("exemplars", 5, "images shown per cluster: its members nearest the cluster's centre", 1, 20,
                  label="Exemplars")
SEED = Param("seed", 0, "draws the sample and starts k-means: the same seed, the same clusters", 0, 2**31 - 1,
             label="Seed")
STRATEGIES = ParamSet("strategies", "the strategies", (CLUSTERS, GRID, SAMPLE, EXEMPLARS, SEED))
TRUE, PREDICTED = "true", "predicted"
BY = Param("by", TRUE, "group maps by the image's true class (its folder) or the model's predicted class",
           choices=(TRUE, PREDICTED), label="Group by")

EIGENGAP, GIVEN = "eigengap", "given"
JSON_FILE = "strategies.json"

# Given source rows (positions in the maps given), their object masks at the maps' resolution: (n, h, w) float, the
# share of each cell on the object, NaN throughout for an image without a mask.
MaskLookup = Callable[[np.ndarray], np.ndarray]


class Mass(NamedTuple):
    """Where a cluster's mass lies: shares of its mean unit-sum map (the mean of its members' shares)."""

    border: float  # on the outer band, BORDER_BAND of the side wide
    centre: float  # in the centre square
    corners: dict[str, float]  # in each corner square, by CORNERS name
    inside: float | None  # on the object, over the members with a mask; None without masks
    object_area: float | None  # the object's share of the picture, over the same members
    masked: int  # members whose mask the shares ``inside`` and ``object_area`` come from


@dataclass(frozen=True)
class Cluster:
    """One strategy of a class."""

    members: np.ndarray  # indices into the class's maps, ascending
    share: float  # of the class's maps
    mean_map: np.ndarray  # (h, w) mean of the members' unit-sum maps, scaled to a maximum of 1 for display
    exemplars: np.ndarray  # indices into the class's maps, nearest the centre first
    exemplar_maps: np.ndarray  # (e, h, w) the exemplars' own maps, each scaled to a maximum of 1
    mass: Mass
    shortcut: bool
    reason: str | None  # why it is flagged, one sentence; None when it is not

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class ClassStrategies:
    """A class's maps split into strategies, largest first."""

    name: str
    images: list[str]  # each map's image, as the source names it
    rows: np.ndarray  # each map's position among the maps given (the results' rows)
    clusters: list[Cluster]
    k: int
    chosen_by: str  # EIGENGAP or GIVEN
    eigenvalues: np.ndarray  # the smallest eigenvalues of the normalised Laplacian, ascending (up to MAX_CLUSTERS + 1)
    sampled_from: int  # the class's maps
    clustered: int  # the maps the clustering saw: all of them, or a seeded sample of ``sample``
    grid: tuple[int, int]  # the cells each map was averaged to
    empty_maps: int  # maps with no mass at all, taken as an even spread
    seconds: float

    @property
    def sampled(self) -> bool:
        return self.clustered < self.sampled_from

    @property
    def eigengaps(self) -> np.ndarray:
        return np.diff(self.eigenvalues)


@dataclass(frozen=True)
class Strategies:
    """Every clustered class, and those left out with the reason."""

    classes: dict[str, ClassStrategies]
    by: str  # TRUE, PREDICTED, or how the caller grouped its maps
    settings: dict[str, Any]  # STRATEGIES's values used
    skipped: dict[str, str] = field(default_factory=dict)  # class name -> why it was not clustered
    notes: list[str] = field(default_factory=list)  # e.g. images whose mask could not be used


def area_matrix(size_in: int, size_out: int) -> np.ndarray:
    """``(size_out, size_in)`` weights that average ``size_in`` cells into ``size_out`` by the area they share."""
    edges_in = np.arange(size_in + 1) / size_in
    edges_out = np.arange(size_out + 1) / size_out
    overlap = (np.minimum(edges_out[1:, None], edges_in[None, 1:]) - np.maximum(edges_out[:-1, None], edges_in[None, :-1]))
    return np.clip(overlap, 0, None) * size_out


def resample(maps: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(..., h, w)`` -> ``(..., H, W)`` by area averaging (each output cell the mean of what it covers)."""
    rows, columns = area_matrix(maps.shape[-2], shape[0]), area_matrix(maps.shape[-1], shape[1])
    return np.einsum("ih,...hw,jw->...ij", rows, maps, columns, optimize=True)


def grid_shape(shape: tuple[int, int], grid: int) -> tuple[int, int]:
    """The cells a ``shape`` map is clustered at: ``grid`` a side at most, never more than its own."""
    return min(shape[0], grid), min(shape[1], grid)


def unit_sum(maps: np.ndarray) -> tuple[np.ndarray, int]:
    """Each map's magnitude scaled to sum to 1 (float32, flattened to ``(N, cells)``), and how many had no mass: an
    empty map becomes an even spread, as it points nowhere."""
    flat = np.abs(maps.reshape(len(maps), -1)).astype(np.float32)
    totals = flat.sum(axis=1, keepdims=True)
    empty = totals[:, 0] <= 0
    flat[empty] = 1.0
    totals[empty] = flat.shape[1]
    return flat / totals, int(empty.sum())


def region_weights(shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """``(h, w)`` weights per region: the share of each cell inside the border band, each corner and the centre."""

    def inside(size: int, low: float, high: float) -> np.ndarray:  # each cell's share of [low, high] of the side
        edges = np.arange(size + 1) / size
        return np.clip(np.minimum(edges[1:], high) - np.maximum(edges[:-1], low), 0, None) * size

    height, width = shape
    first_rows, last_rows = inside(height, 0, CORNER_SIDE), inside(height, 1 - CORNER_SIDE, 1)
    first_columns, last_columns = inside(width, 0, CORNER_SIDE), inside(width, 1 - CORNER_SIDE, 1)
    inner = np.outer(inside(height, BORDER_BAND, 1 - BORDER_BAND), inside(width, BORDER_BAND, 1 - BORDER_BAND))
    return {
        "border": 1 - inner,
        "centre": np.outer(inside(height, *CENTRE_SPAN), inside(width, *CENTRE_SPAN)),
        CORNERS[0]: np.outer(first_rows, first_columns), CORNERS[1]: np.outer(first_rows, last_columns),
        CORNERS[2]: np.outer(last_rows, first_columns), CORNERS[3]: np.outer(last_rows, last_columns),
    }


def sample_indices(count: int, cap: int, seed: int) -> np.ndarray:
    """Which of ``count`` maps the clustering sees: all, or ``cap`` drawn with ``seed``, ascending."""
    if count <= cap:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, cap, replace=False))


class Spectrum(NamedTuple):
    eigenvalues: np.ndarray  # (m,) of the normalised Laplacian, ascending
    vectors: np.ndarray  # (n, m) the matching eigenvectors of D^-1/2 W D^-1/2


def local_scale_rank(count: int) -> int:
    """The neighbour whose distance scales a map's affinities in a class of ``count`` maps (step 2)."""
    return max(1, min(count - 1, max(LOCAL_SCALE_MIN, round(LOCAL_SCALE_SHARE * (count - 1)))))


def spectrum(features: np.ndarray, count: int) -> Spectrum:
    """The ``count`` smallest eigenvalues of the normalised Laplacian of the locally scaled Gaussian affinity of
    ``features`` (n, d), and their eigenvectors."""
    from scipy.linalg import eigh
    from scipy.sparse.linalg import eigsh

    n = len(features)
    x = features.astype(np.float64)
    squares = (x * x).sum(axis=1)
    distances = np.clip(squares[:, None] + squares[None, :] - 2 * x @ x.T, 0, None)
    np.fill_diagonal(distances, 0.0)
    largest = float(distances.max(initial=0))
    if n < 2 or largest <= 1e-30:  # every map the same: one strategy, trivially
        return Spectrum(np.zeros(min(count, n)), np.full((n, min(count, n)), 1 / np.sqrt(n)))
    rank = local_scale_rank(n)
    # Each row's ``rank``-th smallest entry past its own zero on the diagonal: the distance to that neighbour. A map
    # with that many exact copies would get a scale of 0; a floor far below any real distance keeps it finite (the
    # copies stay linked to one another, and to nothing else).
    scales = np.sqrt(np.maximum(np.partition(distances, rank, axis=1)[:, rank], 1e-12 * largest))
    affinity = np.exp(-distances / (scales[:, None] * scales[None, :]))
    np.fill_diagonal(affinity, 0.0)
    degrees = affinity.sum(axis=1)
    # A map far from every other has no weight left to any (exp underflows): it joins no strategy by itself, so
    # its row stays zero and it adds an eigenvalue of 1 rather than a component of its own.
    scale = np.where(degrees > 1e-300, 1 / np.sqrt(np.maximum(degrees, 1e-300)), 0.0)
    normalised = affinity * scale[:, None] * scale[None, :]
    count = min(count, n)
    if n <= 4 * count + 50:  # small: the dense solver is quick and needs no start vector
        values, vectors = eigh(normalised, subset_by_index=[n - count, n - 1])
    else:  # a fixed start vector: the same maps, the same eigenvectors (not all ones: with even degrees that is an
        # eigenvector already, and ARPACK cannot grow a search space from it)
        start = np.random.default_rng(0).uniform(0.5, 1.5, n)
        values, vectors = eigsh(normalised, k=count, which="LA", v0=start / np.linalg.norm(start))
    order = np.argsort(-values)
    return Spectrum(np.clip(1 - values[order], 0, 2), vectors[:, order])


def eigengap_k(eigenvalues: np.ndarray) -> int:
    """The ``i`` of the largest gap ``λ(i+1) - λi``, 1 to MAX_CLUSTERS; 1 with fewer than two eigenvalues."""
    gaps = np.diff(eigenvalues)[:MAX_CLUSTERS]
    return int(np.argmax(gaps)) + 1 if len(gaps) else 1


def spectral_labels(vectors: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Ng-Jordan-Weiss: the top ``k`` eigenvectors' rows scaled to unit length, clustered by k-means."""
    if k == 1:
        return np.zeros(len(vectors), np.int64)
    from sklearn.cluster import KMeans

    embedding = vectors[:, :k]
    lengths = np.linalg.norm(embedding, axis=1, keepdims=True)
    embedding = np.where(lengths > 0, embedding / np.where(lengths > 0, lengths, 1), 0)
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(embedding).astype(np.int64)


def _pct(share: float) -> str:
    return f"{share:.0%}"


def shortcut_reason(mass: Mass, rest_corners: dict[str, float] | None = None) -> str | None:
    """Why a cluster with this mass may be a shortcut (one sentence), or None; thresholds as the constants say.
    ``rest_corners`` are the corner shares of the rest of the class (None when the cluster is all of it)."""
    reasons = []
    if (mass.inside is not None and mass.object_area is not None and mass.inside < OFF_OBJECT_SHARE
            and mass.inside < MIN_OBJECT_LIFT * mass.object_area):
        reasons.append(f"{_pct(1 - mass.inside)} of its mass lies off the object, which covers "
                       f"{_pct(mass.object_area)} of the picture and holds only {_pct(mass.inside)}")
    corner, share = max(mass.corners.items(), key=lambda item: item[1])
    rest = None if rest_corners is None else rest_corners[corner]
    if share >= CORNER_SHARE or (rest is not None and share >= CORNER_NOTABLE and share >= CORNER_CONTRAST * rest):
        where = "" if rest is None else f", where the rest of the class puts {_pct(rest)}"
        reasons.append(f"{_pct(share)} of its mass lies in the {corner} corner, a sixteenth of the picture{where}")
    if mass.border >= BORDER_SHARE:
        reasons.append(f"{_pct(mass.border)} of its mass lies on the border band, {_pct(BORDER_BAND)} of each side")
    if not reasons:
        return None
    text = "; ".join(reasons)
    return text[0].upper() + text[1:] + "."


def _mass(mean_unit: np.ndarray, regions: dict[str, np.ndarray], unit: np.ndarray | None,
          masks: np.ndarray | None) -> Mass:
    """Shares of ``mean_unit`` (h, w) by region; inside the object from the members' own unit-sum maps (n, h, w)
    and mask shares (n, h, w, NaN where unknown)."""
    inside = area = None
    masked = 0
    if unit is not None and masks is not None:
        known = ~np.isnan(masks).any(axis=(1, 2))
        masked = int(known.sum())
        if masked:
            inside = float((unit[known] * masks[known]).sum(axis=(1, 2)).mean())
            area = float(masks[known].mean(axis=(1, 2)).mean())
    return Mass(border=float((mean_unit * regions["border"]).sum()), centre=float((mean_unit * regions["centre"]).sum()),
                corners={name: float((mean_unit * regions[name]).sum()) for name in CORNERS},
                inside=inside, object_area=area, masked=masked)


def _display(maps: np.ndarray) -> np.ndarray:
    """Maps' magnitudes each scaled to a maximum of 1 (float32), for drawing."""
    magnitude = np.abs(maps).astype(np.float32)
    peaks = magnitude.reshape(len(magnitude), -1).max(axis=1)[:, None, None]
    return np.where(peaks > 0, magnitude / np.where(peaks > 0, peaks, 1), 0).astype(np.float32)


def cluster_class(maps: np.ndarray, *, name: str = "", images: Sequence[str] | None = None,
                  rows: np.ndarray | None = None, masks: np.ndarray | MaskLookup | None = None,
                  **settings: Any) -> ClassStrategies:
    """One class's maps ``(N, h, w)`` split into strategies.

    ``images`` names each map's image (default: its index); ``rows`` is each map's position in the caller's arrays
    (default: 0..N-1), which ``masks`` is indexed by: an ``(M, h, w)`` array of each cell's share on the object (NaN
    throughout for an image without a mask), or a function giving those for given rows. Masks are looked up for
    the clustered maps only. ``settings`` are STRATEGIES's (``clusters``, ``grid``, ``sample``, ``exemplars``,
    ``seed``), checked. InputError in one sentence when the maps cannot be clustered.
    """
    start = time.perf_counter()
    chosen = resolve_params(STRATEGIES, settings)
    label = f"class '{echo(name)}'" if name else "the class"
    maps = np.asarray(maps)
    if maps.ndim != 3 or min(maps.shape[1:], default=0) < 1:
        raise InputError(f"The maps of {label} are not (count, height, width) arrays with a height and width.")
    count = len(maps)
    if count < MIN_MAPS:
        raise InputError(f"{label[0].upper()}{label[1:]} has {counted(count, 'map')}; splitting it into strategies "
                         f"needs at least {MIN_MAPS}.")
    if not np.isfinite(maps).all():
        raise InputError(f"The maps of {label} hold values that are not finite numbers (NaN or infinity).")
    if chosen["clusters"] > count:
        raise InputError(f"{chosen['clusters']} clusters were asked of {label}, which has only {counted(count, 'map')}.")
    images = [str(i) for i in range(count)] if images is None else [str(image) for image in images]
    rows = np.arange(count) if rows is None else np.asarray(rows, np.int64)
    if len(images) != count or len(rows) != count:
        raise InputError(f"{label[0].upper()}{label[1:]} has {count} maps but {len(images)} image names and "
                         f"{len(rows)} rows.")
    shape = (int(maps.shape[1]), int(maps.shape[2]))
    grid = grid_shape(shape, chosen["grid"])
    shares, empty = unit_sum(resample(maps.astype(np.float32), grid) if grid != shape else maps)
    features = shares ** FEATURE_POWER  # what the clustering compares (module docstring, step 1)
    picked = sample_indices(count, chosen["sample"], chosen["seed"])
    found = spectrum(features[picked], MAX_CLUSTERS + 1)
    k = chosen["clusters"] or min(eigengap_k(found.eigenvalues), len(picked))
    # k-means on fewer distinct points than k leaves a cluster empty: number the clusters it did fill.
    used, sample_labels = np.unique(spectral_labels(found.vectors, k, chosen["seed"]), return_inverse=True)
    k = len(used)
    labels = np.empty(count, np.int64)
    labels[picked] = sample_labels
    centres = np.stack([features[picked][sample_labels == c].mean(axis=0) for c in range(k)])
    rest = np.setdiff1d(np.arange(count), picked, assume_unique=True)
    if len(rest):  # the maps the clustering did not see join the nearest centre
        labels[rest] = _nearest(features[rest], centres)

    unit_maps, _ = unit_sum(maps)
    unit_maps = unit_maps.reshape(count, *shape)
    regions = region_weights(shape)
    if masks is None:
        sample_masks = None
    else:
        lookup = masks if callable(masks) else (lambda wanted: np.asarray(masks)[wanted])
        sample_masks = np.asarray(lookup(rows[picked]), np.float32)
        if sample_masks.shape != (len(picked), *shape):
            raise InputError(f"The masks of {label} are {sample_masks.shape[1:]} cells, not the maps' {shape}.")
    clusters = []
    class_total = unit_maps.sum(axis=0)
    for c in range(k):
        members = np.flatnonzero(labels == c)
        in_sample = np.isin(picked, members)
        distances = ((features[members] - centres[c]) ** 2).sum(axis=1)
        exemplars = members[np.argsort(distances, kind="stable")[: chosen["exemplars"]]]
        mean_unit = unit_maps[members].mean(axis=0)
        mass = _mass(mean_unit, regions, unit_maps[picked[in_sample]],
                     None if sample_masks is None else sample_masks[in_sample])
        rest_corners = None
        if len(members) < count:  # the mean map of the class's other strategies, for the corner contrast
            rest_mean = (class_total - unit_maps[members].sum(axis=0)) / (count - len(members))
            rest_corners = {corner: float((rest_mean * regions[corner]).sum()) for corner in CORNERS}
        reason = shortcut_reason(mass, rest_corners)
        clusters.append(Cluster(members=members, share=len(members) / count, mean_map=_display(mean_unit[None])[0],
                                exemplars=exemplars, exemplar_maps=_display(maps[exemplars]), mass=mass,
                                shortcut=reason is not None, reason=reason))
    clusters.sort(key=lambda cluster: (-cluster.size, int(cluster.members[0])))
    return ClassStrategies(name=name, images=images, rows=rows, clusters=clusters, k=k,
                           chosen_by=GIVEN if chosen["clusters"] else EIGENGAP, eigenvalues=found.eigenvalues,
                           sampled_from=count, clustered=len(picked), grid=grid, empty_maps=empty,
                           seconds=time.perf_counter() - start)


def _nearest(features: np.ndarray, centres: np.ndarray, batch: int = 50_000) -> np.ndarray:
    """Index of the nearest centre for each row of ``features``, in batches to bound memory."""
    squares = (centres * centres).sum(axis=1)
    found = [np.argmin(squares[None, :] - 2 * features[i:i + batch] @ centres.T, axis=1)
             for i in range(0, len(features), batch)]
    return np.concatenate(found).astype(np.int64)


def strategies_of_maps(maps: np.ndarray, labels: np.ndarray, class_names: Sequence[str], images: Sequence[str], *,
                       classes: Sequence[str] | None = None, masks: np.ndarray | MaskLookup | None = None,
                       by: str = "given", source: str = "the maps", **settings: Any) -> Strategies:
    """Strategies of any method's maps over a dataset: ``maps`` (N, h, w), ``labels`` (N,) the class index each
    map is grouped under, ``class_names`` by index, ``images`` (N,) each map's image as the output should name it.

    ``classes`` names the classes to cluster (default: every class with maps; those with fewer than MIN_MAPS are
    left out, with the reason in ``skipped``). ``masks`` as ``cluster_class`` takes them, by row of ``maps``.
    ``source`` is how messages name where the maps came from. InputError in one sentence for an unknown class, a
    named class too small to cluster, or nothing to cluster.
    """
    chosen = resolve_params(STRATEGIES, settings)
    maps, labels = np.asarray(maps), np.asarray(labels, np.int64)
    if maps.ndim != 3 or maps.shape[1] == 0 or maps.shape[2] == 0:
        raise InputError(f"{source[0].upper()}{source[1:]} hold no maps to cluster.")
    if len(labels) != len(maps) or len(images) != len(maps):
        raise InputError(f"{source[0].upper()}{source[1:]} give {len(maps)} maps, {len(labels)} labels and "
                         f"{len(images)} image names; they must match.")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise InputError(f"{source[0].upper()}{source[1:]} label maps with classes outside the "
                         f"{counted(len(class_names), 'class name')} given.")
    counts = np.bincount(labels, minlength=len(class_names)) if len(labels) else np.zeros(len(class_names), np.int64)
    wanted = _wanted_classes(classes, class_names, counts, by, source)
    results: dict[str, ClassStrategies] = {}
    skipped: dict[str, str] = {}
    for index in wanted:
        name = class_names[index]
        if counts[index] < MIN_MAPS:
            why = (f"class '{echo(name)}' has {counted(int(counts[index]), 'map')} by its {by} class in {source}; "
                   f"splitting it into strategies needs at least {MIN_MAPS}")
            if classes is not None:
                raise InputError(why[0].upper() + why[1:] + ".")
            skipped[name] = why[0].upper() + why[1:] + "."
            continue
        rows = np.flatnonzero(labels == index)
        results[name] = cluster_class(maps[rows], name=name, images=[images[int(i)] for i in rows], rows=rows,
                                      masks=masks, **chosen)
    if not results:
        raise InputError(f"No class in {source} has the {MIN_MAPS} maps that splitting into strategies needs.")
    return Strategies(classes=results, by=by, settings=chosen, skipped=skipped)


def _wanted_classes(classes: Sequence[str] | None, class_names: Sequence[str], counts: np.ndarray, by: str,
                    source: str) -> list[int]:
    """Indices of the classes to cluster: those named (each once, in order), or every class with maps."""
    if classes is None:
        return [int(i) for i in np.flatnonzero(counts)]
    index = {name: i for i, name in enumerate(class_names)}
    wanted = []
    for name in dict.fromkeys(classes):
        if name not in index:
            some = ", ".join(f"'{echo(n, 40)}'" for n in list(class_names)[:5])
            raise InputError(f"'{echo(name)}' is not a class of {source}; its classes include {some}.")
        if counts[index[name]] == 0:
            raise InputError(f"Class '{echo(name)}' has no maps by its {by} class in {source}.")
        wanted.append(index[name])
    return wanted


def results_masks(evaluation: Evaluation, object_masks: ObjectMasks,
                  read: Callable[[str], np.ndarray | None], problems: list[str]) -> MaskLookup:
    """A MaskLookup over an evaluation's rows: each image read with ``read`` and its mask from ``object_masks``,
    averaged to the maps' cells (the model stretches its input, and so the mask). An image that cannot be read, or
    whose mask cannot be used, gets none, and a sentence in ``problems``."""
    shape = evaluation.cams.shape[1:3]

    def lookup(rows: np.ndarray) -> np.ndarray:
        found = np.full((len(rows), *shape), np.nan, np.float32)
        for slot, row in enumerate(rows):
            file = evaluation.files[int(row)]
            image = read(evaluation.location(int(row)))
            if image is None:
                problems.append(f"'{echo(file)}' could not be read, so its mask is not used.")
                continue
            try:
                mask = object_masks.mask_for(file, image)
            except InputError as error:
                problems.append(str(error))
                continue
            found[slot] = resample(mask.astype(np.float32), shape)
        return found

    return lookup


def strategies_of_results(evaluation: Evaluation, *, by: str = TRUE, classes: Sequence[str] | None = None,
                          object_masks: ObjectMasks | None = None,
                          read: Callable[[str], np.ndarray | None] | None = None, source: str = "the results",
                          **settings: Any) -> Strategies:
    """Strategies of a dataset evaluation's stored Grad-CAMs (``open_results``), grouped by each image's true or
    predicted class; images named as the results name them. With ``object_masks``, each clustered image is read
    with ``read`` (default ``read_image``) for its mask. InputError in one sentence when the results hold no maps."""
    from explainers.datasets.evaluation import read_image

    if by not in (TRUE, PREDICTED):
        raise InputError(f"Maps are grouped by their {TRUE} or {PREDICTED} class, not by '{echo(by)}'.")
    if evaluation.cams.ndim != 3 or evaluation.cams.size == 0:
        raise InputError(f"{source[0].upper()}{source[1:]} hold no maps: they were evaluated without a Grad-CAM "
                         "layer, so there is nothing to cluster.")
    problems: list[str] = []
    masks = None if object_masks is None else results_masks(evaluation, object_masks, read or read_image, problems)
    labels = evaluation.true if by == TRUE else evaluation.predicted
    found = strategies_of_maps(evaluation.cams, labels, evaluation.class_names, evaluation.files, classes=classes,
                               masks=masks, by=by, source=source, **settings)
    return Strategies(classes=found.classes, by=by, settings=found.settings, skipped=found.skipped, notes=problems)


def _rounded(value: float | None, places: int = 4) -> float | None:
    return None if value is None else round(float(value), places)


def cluster_json(result: ClassStrategies, cluster: Cluster) -> dict[str, Any]:
    mass = cluster.mass
    return {
        "images": [result.images[i] for i in cluster.members],
        "size": cluster.size,
        "share": _rounded(cluster.share),
        "exemplars": [result.images[i] for i in cluster.exemplars],
        "mass": {"border": _rounded(mass.border), "centre": _rounded(mass.centre),
                 "corners": {name: _rounded(share) for name, share in mass.corners.items()},
                 "inside": _rounded(mass.inside), "object_area": _rounded(mass.object_area), "masked": mass.masked},
        "shortcut": cluster.shortcut,
        "reason": cluster.reason,
    }


def strategies_json(strategies: Strategies, pictures: dict[str, str] | None = None) -> dict[str, Any]:
    """``strategies.json``'s content: ``{"classes": {name: {"clusters": [{"images", "size", "share", "mass",
    "shortcut", "reason", ...}], "eigengap", "eigenvalues", "k", "sampled_from", ...}}, ...}``; ``pictures`` names
    each class's picture file, when one was written."""
    classes = {}
    for name, result in strategies.classes.items():
        classes[name] = {
            "clusters": [cluster_json(result, cluster) for cluster in result.clusters],
            "k": result.k,
            "chosen_by": result.chosen_by,
            "eigenvalues": [round(float(v), 6) for v in result.eigenvalues],
            "eigengap": [round(float(v), 6) for v in result.eigengaps],
            "sampled_from": result.sampled_from,
            "clustered": result.clustered,
            "sampled": result.sampled,
            "grid": list(result.grid),
            "empty_maps": result.empty_maps,
            "seconds": round(result.seconds, 3),
            **({"picture": pictures[name]} if pictures and name in pictures else {}),
        }
    return {"classes": classes, "by": strategies.by, "settings": strategies.settings, "skipped": strategies.skipped,
            "notes": strategies.notes,
            "clustering": {"feature_power": FEATURE_POWER, "local_scale_share": LOCAL_SCALE_SHARE,
                           "local_scale_min": LOCAL_SCALE_MIN},
            "thresholds": {"corner_share": CORNER_SHARE, "corner_notable": CORNER_NOTABLE,
                           "corner_contrast": CORNER_CONTRAST, "border_share": BORDER_SHARE,
                           "off_object_share": OFF_OBJECT_SHARE, "min_object_lift": MIN_OBJECT_LIFT,
                           "border_band": BORDER_BAND, "corner_side": CORNER_SIDE}}


def write_json(strategies: Strategies, out: str | Path, pictures: dict[str, str] | None = None) -> Path:
    """Write ``<out>/strategies.json`` (the folder must exist); returns its path."""
    path = Path(out) / JSON_FILE
    path.write_text(json.dumps(strategies_json(strategies, pictures), indent=1) + "\n", encoding="utf-8")
    return path
