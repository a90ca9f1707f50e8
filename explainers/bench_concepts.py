"""``python -m explainers.bench --concepts``: strategies on 100,000 rows, and TCAV for 5 concepts x 10 classes.

Strategies. A results folder of 100,000 rows (``--concepts-rows``), 10 classes of 10,000, is written in a temp dir:
its maps are the known-shortcut demo's real Grad-CAMs (its 1,000 test digits through the engine's ``evaluate``),
each row one of its class's maps, drawn at random, under per-cell multiplicative noise (a factor ``exp(N(0, 0.25))``,
which keeps a Grad-CAM's empty cells empty), scaled back to [0, 1] as stored maps are; so half of the 7s carry the
mark's evidence.
The folder is opened (timed apart: reading is not part of ``strategies_of_results``, which takes an open
Evaluation) and every class is clustered with the defaults, grouped by true class (a seeded sample of 2,000 maps per
class, the rest joining the nearest cluster). The floor, timed right after in the same run, class by class: one
scikit-learn k-means (as many clusters as the strategies found, one start) over all of the class's maps in the
features the strategies compare, features included. That is the least any clustering of every map into that many
groups does: it reads every map and assigns it, without choosing the number, sampling, building an affinity or
describing the clusters; the ratio says what those cost. Medians of ``--repeats`` runs (3 by default here).

TCAV. The known-shortcut demo's model at the TCAV defaults (``explainers.concepts.tcav.TCAV``: 10 runs, 50 images a
concept, 100 a class, as many pseudo-concepts as Holm's correction needs, 1,000 for 50 tests), its layer the model's
own CAM layer, the classes the 10 digits of the demo's ``test/``, the random images the demo's ``random/`` (100: the
pool must hold twice a concept's 50). Five concepts: the demo's ``mark`` and ``stripes``, and three made here in a
temp dir from the demo's clean test digits (50 each, 5 a digit, no digit in two of them): ``frame`` (a one-pixel
white frame round the picture), ``corner_br`` (the mark's 4 x 4 square in the bottom-right corner instead of the
top-left) and ``thick`` (the strokes thickened by a 3 x 3 maximum filter); their digits are also among the class
images scored, which changes no timing. It runs once (minutes): the estimate
(``tcav_seconds``, what the CLI and the page show) is taken just before; the time inside model passes
(``Runtime.gradients``, which every forward and backward pass goes through) and inside CAV fits (``fit_cav``) is
measured by wrapping them; the floor is the same passes alone, over the same images at the same batch size, run right
after (median of 3).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from explainers.bench_trust import timed_calls

SYNTHETIC_NOISE = 0.25  # sigma of the log of each cell's factor in the synthetic maps
FLOOR_TIMINGS = 3  # the passes alone are timed this many times; the median is the floor
BATCH_SIZE = 64  # the CLI's default
MADE_CONCEPTS = ("frame", "corner_br", "thick")
MADE_PER_DIGIT = 5  # 5 clean test digits of each class per made concept: 50 images, the default concept size


# --- strategies on 100,000 rows ---


class DemoMaps(NamedTuple):
    """The demo's evaluated test digits: what the synthetic rows are drawn from."""

    cams: np.ndarray  # (N, h, w) in [0, 1]
    true: np.ndarray
    top_classes: np.ndarray
    top_probabilities: np.ndarray
    files: list[str]
    class_names: list[str]
    cam_layer: str | None
    input_size: tuple[int, int] | None


def demo_maps() -> DemoMaps:
    import explainers as ex
    from explainers.inputs.samples import SHORTCUT_TEST_FOLDER

    evaluation = ex.datasets.evaluate(ex.load_model(ex.SHORTCUT_MODEL), SHORTCUT_TEST_FOLDER)
    return DemoMaps(evaluation.cams, evaluation.true, evaluation.top_classes, evaluation.top_probabilities,
                    evaluation.files, evaluation.class_names, evaluation.cam_layer, evaluation.input_size)


def write_synthetic_results(demo: DemoMaps, rows: int, out: Path, seed: int = 0) -> np.ndarray:
    """A results folder at ``out`` of ``rows`` rows, an equal share per class, each a randomly drawn demo map of its
    class under noise (module docstring). Returns each row's source row in ``demo``."""
    from explainers.datasets import storage
    from explainers.datasets.scoring import row_columns

    rng = np.random.default_rng(seed)
    classes = np.unique(demo.true)
    per_class = np.diff(np.linspace(0, rows, len(classes) + 1).round().astype(int))
    sources = np.concatenate([rng.choice(np.flatnonzero(demo.true == c), n) for c, n in zip(classes, per_class)])
    maps = demo.cams[sources] * np.exp(rng.normal(0, SYNTHETIC_NOISE, (len(sources), *demo.cams.shape[1:])))
    maps = (maps / maps.max(axis=(1, 2), keepdims=True)).astype(np.float32)
    paths = [f"{demo.files[s].rsplit('.', 1)[0]}_{i:06d}.png" for i, s in enumerate(sources)]
    top = demo.top_classes[sources]
    probabilities = demo.top_probabilities[sources]
    p_true = np.where(top[:, 0] == demo.true[sources], probabilities[:, 0], 0.0).astype(np.float32)
    columns = row_columns(paths=paths, true=demo.true[sources], top_classes=top, top_probabilities=probabilities,
                          p_true=p_true, least_class=top[:, -1], least_probability=probabilities[:, -1],
                          cams=maps)
    storage.write_rows(out, columns)
    storage.write_info(out, storage.ResultsInfo(
        model="shortcut_cnn (synthetic rows)", model_spec="none", fingerprint="0", class_names=demo.class_names,
        cam_layer=demo.cam_layer, cam_shape=(int(maps.shape[1]), int(maps.shape[2])), root=str(out / "images"),
        mapping_mode="by name", unknown_folders=[], skipped=[], total=len(paths), seconds=0.0, runner="in-process",
        input_size=demo.input_size))
    return sources


def kmeans_floor(maps: np.ndarray, k: int) -> float:
    """Seconds of one k-means (``k`` clusters, one start) over ``maps`` in the strategies' features, those included."""
    from sklearn.cluster import KMeans

    from explainers.concepts.strategies import FEATURE_POWER, GRID, grid_shape, resample, unit_sum

    start = time.perf_counter()
    shape = (int(maps.shape[1]), int(maps.shape[2]))
    grid = grid_shape(shape, GRID.default)
    shares, _ = unit_sum(resample(maps.astype(np.float32), grid) if grid != shape else maps)
    KMeans(n_clusters=max(1, k), n_init=1, random_state=0).fit(shares ** FEATURE_POWER)
    return time.perf_counter() - start


class StrategiesRun(NamedTuple):
    read: float
    total: float
    per_class: dict[str, float]  # ClassStrategies.seconds
    floor: dict[str, float]  # the k-means floor per class
    k: dict[str, int]
    flagged: dict[str, int]  # clusters flagged as possible shortcuts
    sampled: dict[str, tuple[int, int]]  # (clustered, of)


def bench_strategies(repeats: int, rows: int, demo: DemoMaps) -> None:
    from explainers.concepts.strategies import TRUE, strategies_of_results
    from explainers.datasets.storage import open_results

    with tempfile.TemporaryDirectory(prefix="bench-strategies-") as temp:
        folder = Path(temp) / "results"
        start = time.perf_counter()
        sources = write_synthetic_results(demo, rows, folder)
        print(f"wrote a results folder of {len(sources):,} synthetic rows from the demo's maps in "
              f"{time.perf_counter() - start:.1f} s")
        runs: list[StrategiesRun] = []
        for _ in range(repeats):
            start = time.perf_counter()
            evaluation = open_results(folder)
            read = time.perf_counter() - start
            start = time.perf_counter()
            found = strategies_of_results(evaluation, by=TRUE)
            total = time.perf_counter() - start
            floor = {name: kmeans_floor(evaluation.cams[result.rows], result.k)
                     for name, result in found.classes.items()}
            runs.append(StrategiesRun(
                read, total, {name: r.seconds for name, r in found.classes.items()}, floor,
                {name: r.k for name, r in found.classes.items()},
                {name: sum(c.shortcut for c in r.clusters) for name, r in found.classes.items()},
                {name: (r.clustered, r.sampled_from) for name, r in found.classes.items()}))
    _report_strategies(runs, len(sources))


def _report_strategies(runs: list[StrategiesRun], rows: int) -> None:
    last = runs[-1]
    print(f"\nstrategies, {rows:,} rows in {len(last.k)} classes, grouped by true class, the defaults; medians of "
          f"{len(runs)} runs (floor: one k-means per class over all its maps, timed after each run)\n")
    print(f"{'class':>6s} {'maps':>7s} {'clustered':>9s} {'k':>2s} {'flags':>5s} {'seconds':>8s} {'floor s':>8s} "
          f"{'ratio':>6s}")
    for name in last.k:
        clustered, maps = last.sampled[name]
        seconds = statistics.median(r.per_class[name] for r in runs)
        floor = statistics.median(r.floor[name] for r in runs)
        ratio = statistics.median(r.per_class[name] / r.floor[name] for r in runs)
        print(f"{name:>6s} {maps:7,d} {clustered:9,d} {last.k[name]:2d} {last.flagged[name]:5d} {seconds:8.2f} "
              f"{floor:8.2f} {ratio:6.1f}")
    total = statistics.median(r.total for r in runs)
    floors = statistics.median(sum(r.floor.values()) for r in runs)
    ratio = statistics.median(r.total / sum(r.floor.values()) for r in runs)
    print(f"{'all':>6s} {rows:7,d} {'':9s} {'':2s} {'':5s} {total:8.2f} {floors:8.2f} {ratio:6.1f}")
    print(f"reading the results folder (open_results, not in the seconds above): "
          f"{statistics.median(r.read for r in runs):.2f} s")


# --- TCAV, 5 concepts x 10 classes ---


def make_concepts(folder: Path, seed: int = 0) -> dict[str, Path]:
    """The three made concepts (module docstring) as PNG folders under ``folder``, from the demo's clean test digits."""
    import json

    from PIL import Image
    from scipy.ndimage import maximum_filter

    from explainers.inputs.samples import SHORTCUT_DIR, SHORTCUT_MANIFEST, SHORTCUT_TEST_FOLDER

    manifest = json.loads(SHORTCUT_MANIFEST.read_text())
    marked = {SHORTCUT_DIR / path for path in manifest["marked_test_files"]}
    box = manifest["mark_box"]
    rng = np.random.default_rng(seed)
    made = {name: folder / name for name in MADE_CONCEPTS}
    for path in made.values():
        path.mkdir(parents=True)
    for digit in sorted(p for p in SHORTCUT_TEST_FOLDER.iterdir() if p.is_dir()):
        clean = [p for p in sorted(digit.glob("*.png")) if p not in marked]
        picked = rng.choice(len(clean), MADE_PER_DIGIT * len(MADE_CONCEPTS), replace=False)
        for number, index in enumerate(picked):
            name = MADE_CONCEPTS[number // MADE_PER_DIGIT]
            pixels = np.asarray(Image.open(clean[index]).convert("L")).copy()
            if name == "frame":
                pixels[[0, -1], :] = 255
                pixels[:, [0, -1]] = 255
            elif name == "corner_br":
                side = pixels.shape[0]
                low = side - box["top"] - box["height"]
                pixels[low: low + box["height"], low: low + box["width"]] = manifest["mark_value"]
            else:
                pixels = maximum_filter(pixels, size=3)
            Image.fromarray(pixels).save(made[name] / clean[index].name)
    return made


def _passes_alone(model, plan, batch_size: int) -> Callable[[], None]:
    """The passes ``run_tcav`` sends, alone: forward over the random and concept images, backward over each class's."""
    from explainers.concepts.tcav import layer_activations, logit_gradients

    def run() -> None:
        layer_activations(model, plan.random.pixels, plan.layer, batch_size)
        for concept in plan.concepts:
            layer_activations(model, concept.pixels, plan.layer, batch_size)
        for item in plan.classes:
            logit_gradients(model, item.images.pixels, item.index, plan.layer, batch_size)

    return run


def bench_tcav(runs: int | None) -> None:
    import explainers as ex
    from explainers.concepts import tcav
    from explainers.inputs.samples import SHORTCUT_CONCEPTS_FOLDER, SHORTCUT_RANDOM_FOLDER, SHORTCUT_TEST_FOLDER
    from explainers.runtime.passes import Runtime

    model = ex.load_model(ex.SHORTCUT_MODEL)
    settings = tcav.tcav_settings(**({} if runs is None else {"runs": runs}))
    with tempfile.TemporaryDirectory(prefix="bench-tcav-") as temp:
        folders = {"mark": SHORTCUT_CONCEPTS_FOLDER / "mark", "stripes": SHORTCUT_CONCEPTS_FOLDER / "stripes",
                   **make_concepts(Path(temp))}
        concepts = [tcav.ConceptFolder(name=name, folder=folder, shown=name) for name, folder in folders.items()]
        random = tcav.ConceptFolder(name="random", folder=SHORTCUT_RANDOM_FOLDER, shown="random")
        start = time.perf_counter()
        prepared = tcav.prepare_tcav(model, SHORTCUT_TEST_FOLDER, concepts, random, None, None, settings)
        reading = time.perf_counter() - start
    plan = prepared.plan
    passes_alone = _passes_alone(model, plan, BATCH_SIZE)
    start = time.perf_counter()
    passes_alone()  # traces both passes at every batch size the run sends
    tcav.tcav_seconds(model, plan, BATCH_SIZE)  # times the pass cost and a fit once, as a first estimate does
    print(f"\nTCAV: read the images in {reading:.1f} s; one-time tracing and probes: {time.perf_counter() - start:.1f} s")

    estimate = tcav.tcav_seconds(model, plan, BATCH_SIZE)
    passes, fits = [0.0], [0.0]
    with timed_calls(Runtime, "gradients", passes), timed_calls(tcav, "fit_cav", fits):
        start = time.perf_counter()
        result = tcav.run_tcav(model, plan, BATCH_SIZE)
        took = time.perf_counter() - start
    floors = []
    for _ in range(FLOOR_TIMINGS):
        start = time.perf_counter()
        passes_alone()
        floors.append(time.perf_counter() - start)
    floor = statistics.median(floors)
    images = len(plan.random) + sum(len(c) for c in plan.concepts) + sum(len(c.images) for c in plan.classes)
    print(f"TCAV on the demo's model at layer {plan.layer}: {len(plan.concepts)} concepts "
          f"({', '.join(c.name for c in plan.concepts)}) x {len(plan.classes)} classes = {plan.tests} tests; "
          f"{settings.runs} runs, {plan.pseudo_concepts:,} pseudo-concepts, {plan.fits:,} CAV fits; "
          f"{len(plan.random)} random images, {images:,} images through passes; batches of {BATCH_SIZE}; one run\n")
    print(f"{'':34s} {'measured s':>10s} {'against s':>10s}  {'ratio':>6s}")
    print(f"{'whole run vs estimate':34s} {took:10.1f} {estimate:10.1f}  {took / estimate:6.2f}")
    print(f"{'model passes vs passes alone':34s} {passes[0]:10.2f} {floor:10.2f}  {passes[0] / floor:6.2f}")
    print(f"{'CAV fits':34s} {fits[0]:10.1f} {'':>10s}  ({fits[0] / plan.fits * 1000:.2f} ms a fit)")
    print(f"{'other (span bases, projections)':34s} {took - passes[0] - fits[0]:10.1f}")
    significant = [f"{s.class_name}/{s.concept} ({s.score:.2f})" for s in result.scores if s.significant]
    print(f"significant after Holm's correction: {', '.join(significant) or 'none'}")


def bench(repeats: int, rows: int = 100_000, runs: int | None = None) -> None:
    demo = demo_maps()
    bench_strategies(repeats, rows, demo)
    bench_tcav(runs)
