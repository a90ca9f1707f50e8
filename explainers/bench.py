"""Benchmark: python -m explainers.bench [--repeats 5] [--images 4] [--page | --dataset | --learned | --trust | --concepts]

On the embedded model, prints for each method the median seconds for a batch of
images and its ratio to a floor: preparing the model input (resize and
preprocess, which no method can skip) plus the passes the method needs times the
cost of one pass. Content hashing for the cache counts against us. Pass costs are timed right beside each run of the method, at the batch
size the method itself uses (this CPU is cheaper per image in larger batches,
and its speed drifts), and the ratio is the median of the per-run ratios. Then
``layer_grid`` over six layers against tf-keras-vis Gradcam called once per
layer, interleaved the same way.

Timings exclude the one-time tracing of each compiled pass (reported apart):
every method runs once before it is timed. Caches are cleared before every run.

``--page`` instead times the comparison page's default work on one 224 px image
(Saliency, SmoothGrad and Score-CAM, each with deletion and insertion at 16
steps): cold (a freshly loaded model, its passes not yet traced, empty caches)
and warm (everything cached, as on a revisit or a display change).

``--learned`` measures class visualisation (``explainers.learned``) with its
default settings: seconds for one class alone and per class when optimised
together (wall and CPU), the estimate's error (measured seconds over the
estimate's low end, for 1, 2 and 4 classes, on quiet cores and with one core
kept busy beside the run as a browser would; with the CPU other processes took
meanwhile, read from /proc/stat), and the hit rate: how many of a fixed set of
classes the model itself classifies as their own class, on the embedded model
(20 ImageNet classes, for each parameterisation: as made, and after a Gaussian
blur of radius 2 and a half-size round trip, which leaves what a person can
see; side by side, with the ratio to pixel space's and the seconds a class) and
the digits CNN (its 10 classes).

``--dataset`` measures images per second on the digits demo folder (1,000
images) with the bundled digits CNN, each run interleaved with a bare
``model.predict`` over the same preprocessed batches: prediction alone (the
engine's predict, resize and preprocessing included), prediction + Grad-CAM
(the dataset page's pass, in memory), and the whole folder run from disk
(decoding included, per-file cache cleared). Then, when Ray is installed,
in-process next to Ray local with 2 actors on a larger folder, with the
per-batch costs the README's scaling model uses (``explainers.bench_ray``).

``--trust`` runs "which method to trust" on the digits demo (1,000 images, or ``--trust-images N``; the CLI's
default methods, every metric, the digits' strokes as masks; medians of 3 runs unless ``--repeats``) and reports
the seconds, the time inside model passes over their floor (the passes the registrations count, each priced at a
pass of its kind and size timed right after the run), ROAD's imputation against its registered work, and the
estimate's error (``explainers.bench_trust``).

``--concepts`` times the strategies on a 100,000-row results folder made from the known-shortcut demo's maps (seconds
per class and in all, against one k-means per class; ``--concepts-rows N`` for another size), then TCAV for 5 concepts
x 10 classes on the demo's model at the default runs (seconds, the estimate, the passes against the same passes alone;
``--concepts-runs N`` for a quick check) (``explainers.bench_concepts``).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

from explainers import RESULTS, attribute, decode_image, layer_grid, load_model, sample_images
from explainers.attribution import INPUTS
from explainers.methods.registry import REGISTRY
from explainers.runtime.device import cores_of_others, cpu_mark
from explainers.runtime.passes import DEFAULT_BATCH_SIZE

GRID_LAYERS = ["block_2_expand", "block_5_expand", "block_9_expand", "block_12_expand", "block_15_expand", "head_conv"]
SAMPLES = ["cat_chelsea", "coffee", "astronaut", "rocket", "china_temple", "flower", "grace_hopper"]


def seconds(run: Callable[[], object]) -> float:
    RESULTS.clear()
    INPUTS.clear()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


PAGE_METHODS = ["saliency", "smoothgrad", "scorecam"]


def page_work(model, images) -> None:
    from explainers.scores.faithfulness import deletion_insertion

    for name in PAGE_METHODS:
        deletion_insertion(model, images, attribute(model, images, name), steps=16)


def bench_page(repeats: int) -> None:
    image = [decode_image(sample_images()["coffee"]).copy()]
    cold, traced, warm = [], [], []
    for _ in range(repeats):
        model = load_model()  # a new model object: nothing traced, nothing cached under its runtime
        cold.append(seconds(functools.partial(page_work, model, image)))
        start = time.perf_counter()
        page_work(model, image)
        warm.append(time.perf_counter() - start)
        model = load_model()
        model.runtime.warm_up(model.default_cam_layer)  # what the dashboard does in the background on load
        traced.append(seconds(functools.partial(page_work, model, image)))
    print(f"comparison page, default work on one 224 px image (medians of {repeats}):")
    print(f"  cold (fresh model, untraced passes, empty caches)   {statistics.median(cold):6.2f} s")
    print(f"  cold after the dashboard's start-up warm-up         {statistics.median(traced):6.2f} s")
    print(f"  warm (all cached)                                   {statistics.median(warm):6.3f} s")


def bench_dataset(repeats: int, batch_size: int = 64) -> None:
    from explainers import datasets
    from explainers.datasets.scoring import score_rows
    from explainers.inputs.samples import DIGITS_TEST_FOLDER
    from explainers.models.loading import DIGITS_MODEL

    model = load_model(DIGITS_MODEL)
    scan = datasets.scan_folder(DIGITS_TEST_FOLDER)
    images = [decode_image(path) for path in scan.files]
    x = model.preprocess(images)
    count = len(images)
    batches = [images[i : i + batch_size] for i in range(0, count, batch_size)]

    def bare() -> None:
        model.model.predict(x, batch_size=batch_size, verbose=0)

    def predict() -> None:
        for batch in batches:
            model.predict(batch, batch_size=batch_size)

    def predict_and_cam() -> None:
        for batch in batches:
            score_rows(model, [""] * len(batch), [0] * len(batch), batch, model.default_cam_layer)

    def whole_folder() -> None:
        datasets.PER_FILE.clear()
        for _ in datasets.evaluate_iter(model, scan, batch_size=batch_size):
            pass

    runs = {"prediction": predict, "prediction + Grad-CAM": predict_and_cam, "folder from disk + Grad-CAM": whole_folder}
    for run in (bare, *runs.values()):
        run()  # trace every pass once
    print(f"{count} digits ({model.input_size[0]}x{model.input_size[1]} grayscale), batches of {batch_size}; "
          f"medians of {repeats} runs, each next to a bare model.predict\n")
    print(f"{'run':32s} {'images/s':>9s} {'bare images/s':>14s} {'ratio':>6s}")
    for name, run in runs.items():
        ours, theirs = [], []
        for _ in range(repeats):
            ours.append(count / seconds(run))
            theirs.append(count / seconds(bare))
        ratio = statistics.median(a / b for a, b in zip(ours, theirs))
        print(f"{name:32s} {statistics.median(ours):9.0f} {statistics.median(theirs):14.0f} {ratio:6.2f}")

    from explainers import bench_ray

    bench_ray.bench(repeats)


HIT_RATE_CLASSES = ("goldfish", "tree frog", "flamingo", "Golden Retriever", "tabby cat", "monarch butterfly", "zebra",
                    "jellyfish", "volcano", "daisy", "strawberry", "lemon", "pizza", "espresso", "school bus",
                    "airliner", "castle", "umbrella", "mushroom", "balloon")


def bench_learned_estimate(model, counts: tuple[int, ...] = (1, 2, 4)) -> None:
    """The estimate's error: measured seconds over the page's estimate, on quiet cores and with one core busy."""
    from explainers import learned

    settings = learned.settings_for(model)
    print(f"\nestimate vs measured, {settings.steps} steps (took / the estimate's low end, which quiet cores should "
          "meet within ±30%; 'others': the CPU other processes took during the run):")
    for busy in (False, True):
        # A second process spinning on one core stands for the browser that draws the page's progress.
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            for count in counts:
                low, high = learned.estimate_range(model, count, settings)
                learned.VISUALIZATIONS.clear()
                mark = cpu_mark()
                took = seconds(functools.partial(learned.class_visualization, model, HIT_RATE_CLASSES[:count]))
                cores = cores_of_others(mark, took)
                others = "" if cores is None else f", others {cores:.1f} cores"
                print(f"  {count} class{'es' if count > 1 else ' '} {'one core busy' if busy else 'quiet        '}: "
                      f"estimate {low:5.1f}..{high:5.1f} s, took {took:5.1f} s, took / estimate {took / low:4.2f} "
                      f"({'within' if 0.7 * low <= took <= 1.3 * high else 'OUTSIDE'} the range ±30%){others}")
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()


def robust_view(picture: np.ndarray) -> np.ndarray:
    """``picture`` as a person might see it after a careless copy: a Gaussian blur of radius 2, then down to half
    size and back (PIL, bilinear). What survives is what a person can see, not a texture finer than 2 px."""
    from PIL import Image, ImageFilter

    image = Image.fromarray(picture).filter(ImageFilter.GaussianBlur(2))
    width, height = image.size
    half = image.resize((max(1, width // 2), max(1, height // 2)), Image.Resampling.BILINEAR)
    return np.asarray(half.resize((width, height), Image.Resampling.BILINEAR))


def bench_robust(model, classes, together: int = 10) -> dict[str, tuple[int, int, float]]:
    """For each parameterisation at the defaults: how many of ``classes`` the model classifies as their own class,
    as made and after ``robust_view``, and the seconds a class took (optimised ``together`` at a time)."""
    from explainers import learned
    from explainers.parameterisations import PARAMETERISATIONS

    found = {}
    for name in PARAMETERISATIONS:
        learned.class_visualization(model, [0], steps=10, parameterisation=name)  # trace its passes once
        made, robust, start = [], [], time.perf_counter()
        for first in range(0, len(classes), together):
            group = classes[first : first + together]
            pictures = learned.class_visualization(model, group, parameterisation=name)
            as_made = model.predict(list(pictures)).argmax(axis=1)
            blurred = model.predict([robust_view(p) for p in pictures]).argmax(axis=1)
            for label, top, seen in zip(group, as_made, blurred):
                made.append(model.class_names[top] == label)
                robust.append(model.class_names[seen] == label)
                print(f"  {name:8s} {label:20s} made -> {model.class_names[top]:20s} blurred -> "
                      f"{model.class_names[seen]}{'' if robust[-1] else '  (miss)'}")
        found[name] = (sum(made), sum(robust), (time.perf_counter() - start) / len(classes))
    return found


def bench_learned(repeats: int, together: int = 10) -> None:
    from explainers import learned
    from explainers.models.loading import DIGITS_MODEL

    model = load_model()
    learned.class_visualization(model, [0], steps=10)  # trace the pass once, in the fewest steps allowed
    walls, cpus = [], []
    for seed in range(repeats):
        learned.VISUALIZATIONS.clear()
        cpu = time.process_time()
        walls.append(seconds(functools.partial(learned.class_visualization, model, ["espresso"], seed=seed)))
        cpus.append(time.process_time() - cpu)
    defaults = learned.Settings()
    print(f"one class alone, {defaults.parameterisation}, {defaults.steps} steps (medians of {repeats}): "
          f"{statistics.median(walls):.1f} s wall, {statistics.median(cpus):.1f} CPU-s")
    bench_learned_estimate(model)

    print(f"\nrecognised as made and after a blur of radius 2 and a half-size round trip, {len(HIT_RATE_CLASSES)} "
          f"classes on {model.display_name}, {defaults.steps} steps, {together} classes optimised together:")
    found = bench_robust(model, list(HIT_RATE_CLASSES), together)
    floor = found["pixel"][1]
    print(f"\n{'parameterisation':18s} {'as made':>8s} {'blurred':>8s} {'share':>6s} {'/ pixel':>8s} {'s a class':>10s}")
    for name, (made, robust, per_class) in found.items():
        ratio = f"{robust / floor:8.1f}" if floor else f"{'(pixel 0)':>8s}"
        print(f"{name:18s} {made:5d}/{len(HIT_RATE_CLASSES)} {robust:5d}/{len(HIT_RATE_CLASSES)} "
              f"{robust / len(HIT_RATE_CLASSES):6.2f} {ratio} {per_class:10.1f}")

    digits = load_model(DIGITS_MODEL)
    hits, start = [], time.perf_counter()
    for first in range(0, len(digits.class_names), together):
        group = list(digits.class_names[first : first + together])
        probabilities = digits.predict(list(learned.class_visualization(digits, group)))
        for name, row in zip(group, probabilities):
            top = int(row.argmax())
            hits.append(digits.class_names[top] == name)
            print(f"  {name:20s} -> {digits.class_names[top]:20s} {row[top]:.2f}{'' if hits[-1] else '  (miss)'}")
    took = time.perf_counter() - start
    print(f"{digits.display_name}: {sum(hits)} of {len(hits)} classes recognised; {took / len(hits):.1f} s a class "
          f"optimised {together} together\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int,
                        help="runs per figure, whose median is shown (default 5; --trust and --concepts 3)")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--page", action="store_true", help="time the comparison page's default work instead")
    parser.add_argument("--dataset", action="store_true", help="images/s on the digits demo folder instead")
    parser.add_argument("--learned", action="store_true", help="class visualisation: seconds per class and hit rate")
    parser.add_argument("--trust", action="store_true",
                        help="the trust evaluation of the digits demo: seconds, passes over their floor, the estimate")
    parser.add_argument("--trust-images", type=int, metavar="N", help="with --trust: N images (N / 10 per class) "
                                                                       "instead of all 1,000, for a quick check")
    parser.add_argument("--concepts", action="store_true",
                        help="strategies on 100,000 rows and TCAV for 5 concepts x 10 classes on the shortcut demo")
    parser.add_argument("--concepts-rows", type=int, default=100_000, metavar="N",
                        help="with --concepts: the rows of the strategies' results folder (default %(default)s)")
    parser.add_argument("--concepts-runs", type=int, metavar="N",
                        help="with --concepts: TCAV runs instead of the default, for a quick check")
    args = parser.parse_args()
    if args.concepts:
        from explainers import bench_concepts

        bench_concepts.bench(args.repeats or 3, args.concepts_rows, args.concepts_runs)
        return
    if args.trust:
        from explainers import bench_trust

        bench_trust.bench(args.repeats or 3, args.trust_images)
        return
    args.repeats = args.repeats or 5
    if args.page:
        bench_page(args.repeats)
        return
    if args.dataset:
        bench_dataset(args.repeats)
        return
    if args.learned:
        bench_learned(args.repeats)
        return

    model = load_model()
    images = [decode_image(sample_images()[name]) for name in (SAMPLES * 4)[: args.images]]
    x = model.preprocess(images)
    runtime = model.runtime

    def one_pass(backward: bool, batch: int) -> float:
        xs = np.resize(x, (batch, *x.shape[1:]))
        targets = np.full(batch, -1, np.int32)
        if backward:
            return seconds(lambda: runtime.gradients(xs, targets, wrt_input=True, batch_size=batch))
        return seconds(lambda: runtime.forward(xs, targets, batch_size=batch))

    start = time.perf_counter()
    for name in REGISTRY:
        attribute(model, images, name)
    layer_grid(model, images, GRID_LAYERS)
    for backward in (True, False):
        for batch in {len(images), DEFAULT_BATCH_SIZE, 1}:
            one_pass(backward, batch)
    print(f"one-time tracing of every compiled pass: {time.perf_counter() - start:.1f} s")
    print(f"{len(images)} images at 224 px; medians of {args.repeats} runs\n")
    print(f"{'method':24s} {'seconds':>8s} {'floor':>8s} {'ratio':>6s}")

    for name, method in REGISTRY.items():
        times, ratios, floors = [], [], []
        for _ in range(args.repeats):
            took = seconds(functools.partial(attribute, model, images, name))
            floor = seconds(lambda: model.preprocess(images)) + sum(
                count * one_pass(backward, batch)
                for backward, batch, count in method.cost(method.defaults, len(images), DEFAULT_BATCH_SIZE, model.input_size)
            )
            times.append(took)
            floors.append(floor)
            ratios.append(took / floor)
        print(f"{name:24s} {statistics.median(times):8.3f} {statistics.median(floors):8.3f} {statistics.median(ratios):6.2f}")

    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    classes = model.predict(images).argmax(axis=1).tolist()
    gradcam = Gradcam(model.model, model_modifier=ReplaceToLinear(), clone=True)

    def looped() -> None:
        for layer in GRID_LAYERS:
            gradcam(CategoricalScore(classes), x, penultimate_layer=layer)

    looped()  # the same warm-up as ours
    ours, theirs = [], []
    for _ in range(args.repeats):
        ours.append(seconds(lambda: layer_grid(model, images, GRID_LAYERS)))
        theirs.append(seconds(looped))
    print(f"\nlayer grid, {len(GRID_LAYERS)} layers x {len(images)} images:")
    print(f"  layer_grid (one pass)             {statistics.median(ours):7.3f} s")
    print(f"  tf-keras-vis Gradcam, per layer   {statistics.median(theirs):7.3f} s")
    print(f"  ratio (median of per-run ratios)  {statistics.median(a / b for a, b in zip(ours, theirs)):7.2f}")


if __name__ == "__main__":
    main()
