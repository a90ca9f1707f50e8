"""``python -m explainers``: the dashboard's views in bulk, written to a folder, with the same engine.

Subcommands: ``layers``, ``gradcam``, ``compare``, ``evaluate``, ``report``, ``trust``, ``strategies``,
``concepts``, ``discover``, ``visualize``, ``methods``, ``metrics``; ``--help`` on each. ``--plugin FILE.py`` on every command imports the file first, so the
methods and metrics it registers appear in every command. A bad input prints one line on stderr and exits with
status 2; a bad image among many is skipped and reported.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from explainers.errors import InputError, echo
from explainers.inputs.data_roots import check_path
from explainers.inputs.images import IMAGE_SUFFIXES
from explainers.models.preprocessing import PRESETS, describe_presets
from explainers.plugins import load_plugins

if TYPE_CHECKING:
    from explainers.methods.registry import Param

EXIT_BAD_INPUT = 2


def _progress_bar():
    """A progress bar on stderr that disappears when done (stdout stays for results)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, console=Console(stderr=True), transient=True)


def _progress(items: Sequence, description: str) -> Iterable:
    with _progress_bar() as bar:
        yield from bar.track(items, description=description)


def _warn(message: str) -> None:
    print(f"skipped: {message}", file=sys.stderr)


def _load(args: argparse.Namespace):
    from explainers.models.loading import load_model

    return load_model(args.model, args.preprocess, args.labels, args.output)


def _read_images(folder: Path) -> tuple[list[str], list[np.ndarray]]:
    from explainers.inputs.images import decode_image

    if not check_path(folder).is_dir():
        raise InputError(f"'{echo(folder)}' is not a folder.")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    names, images = [], []
    for path in paths:
        try:
            images.append(decode_image(path))
            names.append(path.stem)
        except InputError as error:
            _warn(str(error))
    if not images:
        raise InputError(f"'{echo(folder)}' holds no readable image ({', '.join(IMAGE_SUFFIXES)}).")
    return names, images


def _out_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"'{echo(path)}' cannot be created: {error.strerror or error}.") from None
    return path


def _write_png(path: Path, image: np.ndarray) -> None:
    from explainers.reports.render import png_bytes

    path.write_bytes(png_bytes(image))


def run_layers(args: argparse.Namespace) -> None:
    model = _load(args)
    print(f"{'#':>4}  {'layer':48s} {'resolution':>10s} {'channels':>8s}  type")
    for index, info in enumerate(model.layers, 1):
        print(f"{index:4d}  {info.path:48s} {info.resolution:>10s} {info.channels or 0:8d}  {info.kind}")
    if model.cam_unavailable:
        print(model.cam_unavailable, file=sys.stderr)


def run_gradcam(args: argparse.Namespace) -> None:
    from explainers.attribution import layer_grid
    from explainers.reports.render import compose_grid, overlay, safe_stem

    model = _load(args)
    layers = args.layers or list(model.default_layers)
    names, images = _read_images(args.images)
    out = _out_dir(args.out)
    probabilities = model.predict(images)
    ranked = np.argsort(-probabilities, axis=1)[:, : args.top]
    written = 0
    for i in _progress(range(len(images)), "Grad-CAM"):
        targets = ranked[i].tolist() + ([int(probabilities[i].argmin())] if args.least else [])
        ranks = [f"top{rank}" for rank in range(1, args.top + 1)] + (["least"] if args.least else [])
        grids = layer_grid(model, [images[i]] * len(targets), layers, targets, args.method)  # one pass
        folder = _out_dir(out / names[i])
        rows, labels = [], []
        for rank, target, maps in zip(ranks, targets, grids):
            cells = [overlay(images[i], m) for m in maps]
            for layer, cell in zip(layers, cells):
                _write_png(folder / f"{safe_stem(layer)}__{rank}_{safe_stem(model.class_names[target])}.png", cell)
            written += len(cells)
            rows.append([images[i]] + cells)
            labels.append(f"{rank.replace('top', 'top-')}: {model.class_names[target]} ({probabilities[i, target]:.2f})")
        _write_png(out / f"{names[i]}_grid.png", compose_grid(rows, labels, ["image"] + layers))
    print(f"wrote {written} overlays and {len(images)} grids to {out}", file=sys.stderr)


def run_compare(args: argparse.Namespace) -> None:
    from explainers.attribution import attribute, is_low_probability
    from explainers.reports.comparison import (
        comparison_grid,
        low_probability_notes,
        method_summary,
        row_label,
        scores_table,
    )
    from explainers.reports.render import png_bytes
    from explainers.scores.faithfulness import deletion_insertion

    steps = _curve_steps(args)  # a bad value is one sentence before any model loads or folder is made
    model = _load(args)
    names, images = _read_images(args.images)
    out = _out_dir(args.out)
    results, curves = {}, {}
    for method in _progress(list(args.methods), "Methods"):
        results[method] = attribute(model, images, method, targets=_target(args.target, len(images)),
                                    **_method_params(args, method))
        curves[method] = deletion_insertion(model, images, results[method], steps=steps)
    probabilities = model.predict(images)
    scores = scores_table(results, curves, names, model.class_names, probabilities)
    scores.to_csv(out / "scores.csv", index=False)
    first = results[args.methods[0]]
    explained = probabilities[np.arange(len(names)), first.classes]  # each row's class, as the grid labels it
    for i, name in enumerate(names):
        single = {m: dataclasses.replace(r, raw=r.raw[i : i + 1], classes=r.classes[i : i + 1]) for m, r in results.items()}
        label = row_label(name, model.class_names[first.classes[i]], float(explained[i]))
        grid = comparison_grid([images[i]], [label], single, marked=[is_low_probability(explained[i])])
        (out / f"{name}_compare.png").write_bytes(png_bytes(grid))
    for note in low_probability_notes(names, results, model.class_names, probabilities):
        print(note, file=sys.stderr)
    print(method_summary(scores).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote scores.csv and {len(names)} comparison grids to {out}", file=sys.stderr)


def _evaluate_on_ray(args: argparse.Namespace, model) -> None:
    """``evaluate --ray``: the same results folder and reports, scored by a Ray Data pipeline."""
    from explainers.datasets.storage import open_results
    from explainers.distributed.cluster import ModelSpec
    from explainers.distributed.dataset_pipeline import evaluate_on_ray
    from explainers.distributed.session import import_ray

    out = _out_dir(args.out)
    import_ray()  # Ray Data sets up its logging on import: quieten it after
    # Ray Data's own lines (progress, and a failure's traceback): the bar below shows progress, and a failed
    # run ends in one sentence on stderr.
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)
    with _progress_bar() as bar:
        task = bar.add_task(f"Evaluating on Ray ({args.ray})", total=None)

        def listed(listing) -> None:
            if listing.mapping.unknown:
                _warn(f"class folders the model has no class for: {', '.join(listing.mapping.unknown)}")
            bar.update(task, total=len(listing.paths))

        run = evaluate_on_ray(model, args.data, out, address=args.ray, spec=ModelSpec.of(model, args.output),
                              mapping_mode=_dataset_options(args)["mapping"], actors=args.actors, cpus_per_actor=args.cpus_per_actor,
                              gpus_per_actor=args.gpus_per_actor, batch_size=_dataset_options(args)["batch_size"], on_listed=listed,
                              on_progress=lambda done, total: bar.update(task, completed=done, total=total))
    _write_reports(open_results(out), out, f"{run.seconds:.0f} s on {run.runner} with {args.actors} actor(s), "
                                            f"start-up included; results in {out}")


def _write_reports(evaluation, out: Path, done: str) -> None:
    """The evaluate files from ``evaluation`` in ``out``, a warning per skipped file, and one summary line."""
    from explainers.datasets.evaluation import read_image
    from explainers.reports import dataset as report

    for file, reason in evaluation.skipped:
        _warn(f"{file}: {reason}")
    report.write_files(evaluation, out, read_image)
    print(f"accuracy {evaluation.accuracy:.4f} on {len(evaluation.files):,} images; {len(evaluation.skipped)} skipped; "
          f"{done}", file=sys.stderr)


def run_evaluate(args: argparse.Namespace) -> None:
    from explainers.datasets.evaluation import Evaluation, is_uri
    from explainers.datasets.in_process import evaluate_iter
    from explainers.datasets.mapping import map_classes
    from explainers.datasets.scan import scan_folder
    from explainers.datasets.storage import write_results

    _dataset_options(args)  # a bad value is one sentence before any model loads or folder is made
    model = _load(args)
    if args.ray is not None:
        _evaluate_on_ray(args, model)
        return
    if is_uri(args.data):
        raise InputError(f"'{args.data}' is a URI; without --ray, evaluate reads local folders only: add --ray to read "
                         "it through pyarrow.")
    scan = scan_folder(args.data)
    out = _out_dir(args.out)
    mapping = map_classes(scan.folders, model, _dataset_options(args)["mapping"])
    if mapping.unknown:
        _warn(f"class folders the model has no class for: {', '.join(mapping.unknown)}")
    evaluation = None
    steps = evaluate_iter(model, scan, mapping, batch_size=_dataset_options(args)["batch_size"])
    with _progress_bar() as bar:
        task = bar.add_task("Evaluating", total=len(scan.files))
        for step in steps:
            if isinstance(step, Evaluation):
                evaluation = step
            else:
                bar.update(task, completed=step.done, total=step.total)
    if evaluation is None:
        raise AssertionError("evaluate_iter ends with an Evaluation")
    write_results(out, evaluation, model)  # results.json + rows/: `report --results` redraws from them
    _write_reports(evaluation, out, f"results in {out}")


def run_report(args: argparse.Namespace) -> None:
    from explainers.datasets.storage import open_results

    evaluation = open_results(args.results)  # no model: the results carry their class names
    out = _out_dir(args.out or args.results)
    _write_reports(evaluation, out, f"{evaluation.model_name} ({evaluation.runner}); reports in {out}")


def _option(name: str, param: str) -> str:
    """``--<name>-<param>`` for a registration's parameter; ``--<param>`` for a command's own settings (no name)."""
    return "--" + "-".join(part for part in (name, param) if part).replace("_", "-")


def _dest(method: str, param: str) -> str:
    return f"param__{method}__{param}"


def _metric_dest(metric: str, param: str) -> str:
    return f"metric_param__{metric}__{param}"


def _setting_dest(param: str) -> str:
    return f"setting__{param}"


def _given(args: argparse.Namespace, params, dest: Callable[[str], str]) -> dict:
    """The parameters among ``params`` given on the command line (the rest keep their defaults)."""
    given = {p.name: getattr(args, dest(p.name), None) for p in params}
    return {name: value for name, value in given.items() if value is not None}


def _method_params(args: argparse.Namespace, method: str) -> dict:
    """The parameters given on the command line for ``method`` (the rest keep their defaults)."""
    from explainers.methods.registry import REGISTRY

    return _given(args, REGISTRY[method].params, lambda param: _dest(method, param))


def _metric_params(args: argparse.Namespace, metric: str) -> dict:
    """The parameters given on the command line for ``metric`` (the rest keep their defaults)."""
    from explainers.trust import get_metric

    return _given(args, get_metric(metric).params, lambda param: _metric_dest(metric, param))


def _add_param_options(parser: argparse.ArgumentParser, name: str, label: str, params, dest: Callable[[str], str]) -> None:
    """``--<name>-<parameter>`` for each of a registration's ``params``: type, choices and help from the Param."""
    if not params:
        return
    group = parser.add_argument_group(f"{label} parameters")
    for param in params:
        kind = (lambda text: text.lower() in ("1", "true", "yes", "on")) if param.kind is bool else param.kind
        try:
            group.add_argument(_option(name, param.name), dest=dest(param.name), type=kind,
                               choices=list(param.choices) or None, metavar=None if param.choices else param.kind.__name__.upper(),
                               # argparse %-formats help: a registration's own "10% to 90%" must stay text
                               help=f"{param.help} ({param.describe()}; default {param.default})".replace("%", "%%"))
        except argparse.ArgumentError:  # a plugin's method or metric whose option another option already is
            raise InputError(f"The option {_option(name, param.name)} of {label} is another option already; rename "
                             f"'{name}' or its parameter '{param.name}' in its registration.") from None


def _add_method_options(parser: argparse.ArgumentParser) -> None:
    """``--<method>-<parameter>`` for every registered method's parameters, from their registrations."""
    from explainers.methods.registry import REGISTRY

    for name, method in REGISTRY.items():
        _add_param_options(parser, name, method.label, method.params, functools.partial(_dest, name))


def _add_metric_options(parser: argparse.ArgumentParser) -> None:
    """``--<metric>-<parameter>`` for every registered metric's parameters, as methods get theirs."""
    from explainers.trust import METRICS

    for name, metric in METRICS.items():
        _add_param_options(parser, name, metric.label, metric.params, functools.partial(_metric_dest, name))


def _target(text: str, count: int):
    """``top`` -> each image's top class, ``least`` -> its least likely class, else a class name or index."""
    from explainers.runtime.targets import LEAST, TOP1

    if text == "top":
        return TOP1
    if text == "least":
        return LEAST
    return int(text) if text.isdigit() else text


def run_visualize(args: argparse.Namespace) -> None:
    from explainers.learned import (
        PARAMS,
        UNMOVED_NOTE,
        animation_gif,
        channel_run,
        class_index,
        class_run,
        settings_for,
    )
    from explainers.reports.render import compose_grid, safe_stem

    model = _load(args)
    if bool(args.classes) == bool(args.layer):
        raise InputError("Give either --classes (class names or indices) or --layer with --channels.")
    if args.layer and not args.channels:
        raise InputError("--layer needs --channels: the channel indices to visualise.")
    given = _given(args, PARAMS, _setting_dest)  # the rest keep the model's own defaults
    steps = settings_for(model, **given).steps  # checked before any folder is made or any step is run
    out = _out_dir(args.out)
    with _progress_bar() as bar:
        task = bar.add_task("Optimising", total=steps)

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        if args.classes:
            run = class_run(model, args.classes, report, **given)
            names = [model.class_names[class_index(model, c)] for c in args.classes]
        else:
            run = channel_run(model, args.layer, args.channels, report, **given)
            names = [f"{args.layer} channel {c}" for c in args.channels]
    variants = len(run.pictures) // len(names)  # each target's pictures follow one another
    if variants > 1:
        names = [f"{name} {v + 1}" for name in names for v in range(variants)]
    pictures, frames = run.pictures, run.frames if args.animation else None
    probabilities = model.predict(list(pictures))
    for name, picture, row, unmoved in zip(names, pictures, probabilities, run.unmoved):
        _write_png(out / f"{safe_stem(name)}.png", picture)
        top = ", ".join(f"{model.class_names[c]} {row[c]:.2f}" for c in np.argsort(-row)[:3])
        # An unmoved picture is no result: its top classes would read as a confident answer.
        print(f"{name}: {UNMOVED_NOTE.format(target='class' if args.classes else 'channel')}" if unmoved
              else f"{name}: the model sees {top}")
    _write_png(out / "visualizations.png", compose_grid([list(pictures)], [""], names))
    if frames is not None:  # the same run's frames, from the cache
        (out / f"{safe_stem(names[0])}.gif").write_bytes(animation_gif(frames))
    print(f"wrote {len(names)} visualisations to {out}", file=sys.stderr)


def run_methods(args: argparse.Namespace) -> None:
    from explainers.methods.registry import markdown_table

    print(markdown_table())


def run_metrics(args: argparse.Namespace) -> None:
    from explainers.trust import markdown_table

    print(markdown_table())


# What `trust` evaluates when --methods is not given: the comparison page's defaults with Integrated Gradients and
# Grad-CAM, at a cost a laptop affords (RISE and Occlusion cost hundreds of passes an image); those the model cannot
# run are left out.
TRUST_METHODS = ("saliency", "smoothgrad", "integrated_gradients", "gradcam", "scorecam")
NOTES_SHOWN = 5  # skipped images or mask problems printed one by one; the rest are counted (the report lists them)


def _names(given: Sequence[str] | None) -> list[str]:
    """Names given space- or comma-separated (``a,b c``), in order, each once."""
    return list(dict.fromkeys(name.strip() for text in given or [] for name in text.split(",") if name.strip()))


def _setting(args: argparse.Namespace, param: Param, owner: str) -> Any:
    """A command's own setting (``--<param>``) as given, checked against ``param``; its default when not given."""
    given = getattr(args, _setting_dest(param.name))
    return param.default if given is None else param.check(given, owner)


def _curve_steps(args: argparse.Namespace) -> int:
    from explainers.options import CURVE_STEPS

    return _setting(args, CURVE_STEPS, "the curves")


def _seed(args: argparse.Namespace) -> int:
    from explainers.options import SEED, TRUST_SAMPLE

    return _setting(args, SEED, TRUST_SAMPLE.label)


def _per_class(text: str | None) -> int | None:
    """``--sample``: images per class, or None for all (sample_listing refuses fewer than 1). No upper bound here, as
    the page's PER_CLASS has: the command line takes every image unless told."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise InputError(f"--sample is a whole number of images per class; got '{echo(text)}'.") from None


def _object_masks(args: argparse.Namespace):
    """The masks ``--masks``, ``--boxes`` or ``--strokes`` name, or None."""
    from explainers.trust.masks import masks_from_boxes, masks_from_folder, masks_from_strokes

    if args.masks is not None:
        return masks_from_folder(args.masks)
    if args.boxes is not None:
        return masks_from_boxes(args.boxes)
    if args.strokes is not None:
        return masks_from_strokes(args.strokes)
    return None


def _trust_request(args: argparse.Namespace, model, has_masks: bool):
    """The methods and metrics asked for (by default the usual methods and every metric the inputs allow), with
    their command-line parameters, checked."""
    from explainers.methods.registry import get_method
    from explainers.trust import get_metric, metric_names
    from explainers.trust.scoring import trust_request

    methods = _names(args.methods) or [m for m in TRUST_METHODS if get_method(m).unavailable(model) is None]
    metrics = _names(args.metrics) or metric_names(has_masks)
    for name in methods:
        get_method(name)  # an unknown name: one sentence, before its parameters are looked up
    for name in metrics:
        get_metric(name)
    return trust_request(model, {name: (args.layer, _method_params(args, name)) for name in methods},
                         {name: _metric_params(args, name) for name in metrics}, has_masks=has_masks,
                         target=args.target, batch_size=_dataset_options(args)["batch_size"])


def _with_params(label: str, layer: str | None, params) -> str:
    shown = ([f"layer {layer}"] if layer else []) + [f"{name}={value!r}" for name, value in params]
    return f"{label} ({', '.join(shown)})" if shown else label


def _trust_plan(listing, sample, request, masks, per_class: int | None) -> list[str]:
    """What the run will do, in three lines: the images, the methods and the metrics, with their parameters."""
    from explainers.methods.registry import get_method
    from explainers.trust import get_metric

    each = "all of each class" if per_class is None else f"up to {per_class:,} per class"
    explained = "its true class" if request.target == "true" else "its predicted class"
    root = listing.root.rstrip("/").rsplit("/", 1)[-1]
    return [f"plan: {len(sample.paths):,} images of '{root}' ({each}, {len(set(sample.true))} classes), each map "
            f"explaining {explained}; masks: {masks.source if masks is not None else 'none'}",
            "methods: " + "; ".join(_with_params(get_method(m.method).label, m.layer, m.params) for m in request.methods),
            "metrics: " + "; ".join(_with_params(get_metric(m.name).label, None, m.params) for m in request.metrics)]


def _note_each(prefix: str, items: Sequence[tuple[str, str]]) -> None:
    """``prefix: image: why`` on stderr for the first few items, then how many more."""
    for image, why in items[:NOTES_SHOWN]:
        print(f"{prefix}: {image}: {why}", file=sys.stderr)
    if len(items) > NOTES_SHOWN:
        print(f"{prefix}: {len(items) - NOTES_SHOWN:,} more images (the report lists them)", file=sys.stderr)


def _trust_result(args: argparse.Namespace, model, listing, request, per_class: int | None, masks,
                  on_ray: Callable | None):
    """The evaluation with a progress bar, on this machine or (``--ray``) as a Ray pipeline: the one place that
    chooses. Either gives a TrustResult."""
    from explainers.trust.evaluate import TrustResult, evaluate_trust_iter

    with _progress_bar() as bar:
        task = bar.add_task("Scoring" if on_ray is None else f"Scoring on Ray ({args.ray})", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        if on_ray is not None:
            from explainers.distributed.cluster import ModelSpec

            logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # the bar shows progress; a failure is a sentence
            plugins = tuple(str(Path(path).expanduser().resolve()) for path in args.plugin)  # each worker loads them
            return on_ray(model, listing, request, per_class=per_class, seed=_seed(args), masks=masks, address=args.ray,
                          spec=ModelSpec.of(model, args.output), actors=args.actors,
                          cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor, plugins=plugins,
                          on_progress=progress)
        for step in evaluate_trust_iter(model, listing, request, per_class, _seed(args), masks):
            if isinstance(step, TrustResult):
                return step
            progress(step.done, step.total)
    raise AssertionError("evaluate_trust_iter ends with a TrustResult")


def run_trust(args: argparse.Namespace) -> None:
    from explainers.datasets.sources import list_images
    from explainers.estimates import describe, duration
    from explainers.trust.evaluate import sample_listing, trust_seconds
    from explainers.trust.report import metrics_table, trust_report_html
    from explainers.trust.storage import IMAGES_FILE, REPORT_FILE, ROWS_FOLDER, TRUST_FILE, write_trust
    from explainers.trust.summary import summarise

    per_class = _per_class(args.sample)
    _dataset_options(args), _seed(args)  # bad values are one sentence before any model loads or folder is made
    on_ray: Callable | None = None
    if args.ray is not None:
        from explainers.distributed.session import import_ray
        from explainers.trust.distributed import evaluate_trust_ray

        on_ray = evaluate_trust_ray
        import_ray()  # before any work: without Ray Data installed, one sentence at once
    masks = _object_masks(args)
    model = _load(args)
    request = _trust_request(args, model, has_masks=masks is not None)
    listing = list_images(args.data, model, _dataset_options(args)["mapping"])
    if listing.mapping.unknown:
        _warn(f"class folders the model has no class for: {', '.join(listing.mapping.unknown)}")
    _note_each("skipped", listing.skipped)
    sample = sample_listing(listing, per_class, _seed(args))
    if sample.classes_short:
        short = ", ".join(model.class_names[label] for label in sample.classes_short)
        print(f"classes with fewer than {per_class:,} images (all of theirs are scored): {short}", file=sys.stderr)
    out = _out_dir(args.out)
    estimate = trust_seconds(model, request, len(sample.paths))
    for line in _trust_plan(listing, sample, request, masks, per_class):
        print(line, file=sys.stderr)
    print(f"estimate: {describe(estimate)} with nothing cached", file=sys.stderr)
    result = _trust_result(args, model, listing, request, per_class, masks, on_ray)
    summary = summarise(result.rows, request.method_names, request.metric_names, seed=_seed(args))
    write_trust(result, summary, out, per_class, _seed(args), trust_report_html(result, summary))
    print(metrics_table(summary).to_string(index=False))
    _note_each("skipped", result.skipped)
    _note_each("no localisation for", result.mask_problems)
    took = f"{result.seconds:.1f} s" if result.seconds < 10 else duration(result.seconds)
    print(f"scored {len(result.images):,} images in {took} (estimated {describe(estimate)}); "
          f"wrote {TRUST_FILE}, {ROWS_FOLDER}/, {IMAGES_FILE} and {REPORT_FILE} to {out}", file=sys.stderr)


def _plugin_parser() -> argparse.ArgumentParser:
    """``--plugin``, a parent of every command; also read alone, before the parser is built (see ``main``)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                        help="a Python file imported first (repeatable), so the methods "
                             "(explainers.methods.registry.register) and metrics (explainers.trust.register_metric) "
                             "it registers appear in every command; it runs as your own code, so name only files you "
                             "trust")
    return parser


def _add_dataset_options(parser: argparse.ArgumentParser) -> None:
    """How a dataset's class folders meet the model's classes, and the batch size: `evaluate` and `trust`."""
    from explainers.options import DATASET

    _add_param_options(parser, "", "Dataset", DATASET.params, _setting_dest)  # --mapping, --batch-size


def _dataset_options(args: argparse.Namespace) -> dict:
    """``--mapping`` and ``--batch-size`` as given, checked, with defaults for the rest."""
    from explainers.methods.registry import resolve_params
    from explainers.options import DATASET

    return resolve_params(DATASET, _given(args, DATASET.params, _setting_dest))


def _add_ray_options(parser: argparse.ArgumentParser) -> None:
    ray = parser.add_argument_group("on a Ray cluster (needs ray[data])")
    ray.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                     help="score on Ray: alone or 'local' starts Ray on this machine, host:port joins a running cluster")
    ray.add_argument("--actors", type=int, default=1, help="model copies scoring batches in parallel (default %(default)s)")
    ray.add_argument("--cpus-per-actor", type=float, default=1.0,
                     help="CPU cores each actor reserves, and its TensorFlow threads (default %(default)s)")
    ray.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs each actor reserves (default %(default)s)")


def run_strategies(args: argparse.Namespace) -> None:
    from explainers.concepts.strategies import BY, STRATEGIES, strategies_of_results, write_json
    from explainers.datasets.evaluation import read_image
    from explainers.datasets.storage import open_results
    from explainers.errors import counted
    from explainers.reports.strategies import CELL, write_pictures

    # Bad values are one sentence before any folder is read or made.
    settings = {param.name: _setting(args, param, STRATEGIES.label) for param in STRATEGIES.params}
    by = _setting(args, BY, STRATEGIES.label)
    evaluation = open_results(args.results)  # no model: the results carry their maps and class names
    object_masks = None
    if args.masks is not None:
        from explainers.trust.masks import masks_from_folder

        object_masks = masks_from_folder(args.masks)
    found = strategies_of_results(evaluation, by=by, classes=args.classes, object_masks=object_masks,
                                  read=read_image, source=f"the results in '{echo(args.results)}'", **settings)
    out = _out_dir(args.out)
    height, width = evaluation.input_size or evaluation.cams.shape[1:3]
    size = (CELL, max(1, round(CELL * width / height)))
    pictures = write_pictures(found, out, lambda result: [evaluation.location(int(row)) for row in result.rows],
                              read_image, size)
    write_json(found, out, pictures)
    for name, result in found.classes.items():
        sample = (f"{result.clustered:,} of {result.sampled_from:,} maps clustered (a seeded sample; the rest joined "
                  f"the nearest cluster)" if result.sampled else f"{result.sampled_from:,} maps")
        shares = ", ".join(f"{cluster.share:.0%}" + (" (possible shortcut)" if cluster.shortcut else "")
                           for cluster in result.clusters)
        noun = "strategy" if result.k == 1 else "strategies"
        print(f"{name}: {result.k} {noun} ({result.chosen_by}) from {sample}, in {result.seconds:.1f} s: {shares}")
        for number, cluster in enumerate(result.clusters, 1):
            if cluster.reason:
                print(f"  {name} strategy {number}: {cluster.reason}")
    for why in found.skipped.values():  # every class, so none goes missing from the output unsaid
        print(f"not clustered: {why}", file=sys.stderr)
    for note in found.notes[:NOTES_SHOWN]:
        _warn(note)
    if len(found.notes) > NOTES_SHOWN:
        print(f"... and {len(found.notes) - NOTES_SHOWN:,} more images without a usable mask", file=sys.stderr)
    print(f"wrote strategies.json and {counted(len(pictures), 'picture')} to {out}", file=sys.stderr)


def run_concepts(args: argparse.Namespace) -> None:
    from explainers.concepts.tcav import (
        CONCEPTS_FILE,
        ConceptFolder,
        parse_concept,
        prepare_tcav,
        run_tcav,
        tcav_seconds,
        write_concepts_json,
    )
    from explainers.estimates import describe
    from explainers.reports.concepts import concepts_png

    # Bad values are one sentence before any model loads or folder is read or made.
    settings = _tcav_settings(args)
    batch_size = _dataset_options(args)["batch_size"]
    concepts = [ConceptFolder(name=name, folder=folder, shown=folder) for name, folder in map(parse_concept, args.concept)]
    random = None if args.random is None else ConceptFolder(name="random", folder=args.random, shown=args.random)
    model = _load(args)
    prepared = prepare_tcav(model, args.data, concepts, random, _names(args.classes), args.layer, settings,
                            _dataset_options(args)["mapping"])
    for why in prepared.skipped_files:
        _warn(why)
    if prepared.unknown_folders:
        _warn(f"class folders the model has no class for: {', '.join(prepared.unknown_folders)}")
    _note_each("skipped", prepared.skipped_images)
    plan = prepared.plan
    estimate = tcav_seconds(model, plan, batch_size)
    print(f"layer {plan.layer}: {len(plan.concepts)} concepts ({', '.join(f'{c.name} {len(c)}' for c in plan.concepts)}"
          f" images) x {len(plan.classes)} classes = {plan.tests} tests; {len(plan.random):,} random images "
          f"({plan.random_source}); {settings.runs} runs; {plan.pseudo_concepts:,} pseudo-concepts per concept "
          f"(smallest p {plan.smallest_p:.2g}, corrected threshold {settings.alpha:g} / {plan.tests}); "
          f"{plan.fits:,} CAVs to fit", file=sys.stderr)
    print(f"estimate: {describe(estimate)}", file=sys.stderr)
    out = _out_dir(args.out)
    with _progress_bar() as bar:
        task = bar.add_task("Testing concepts", total=None)
        result = run_tcav(model, plan, batch_size,
                          lambda done, total: bar.update(task, completed=done, total=total))
    write_concepts_json(result, out)
    (out / "concepts.png").write_bytes(concepts_png(result))
    print(f"{'class':20s} {'concept':20s} {'score':>6s} {'null':>11s} {'p':>8s} {'p (Holm)':>8s}  verdict")
    for item in result.scores:
        verdict = "significant" if item.significant else ("no CAV" if not item.separable else "not significant")
        print(f"{item.class_name[:20]:20s} {item.concept[:20]:20s} {item.score:6.2f} "
              f"{item.null_score_low:5.2f}-{item.null_score_high:4.2f} {item.p_value:8.4f} {item.p_adjusted:8.4f}  "
              f"{verdict}")
    for cav in result.concepts:
        if not cav.separable:
            _warn(f"the CAV of '{cav.name}' tells it from the random images in only {cav.cav_accuracy:.0%} "
                  "of held-out images: it is no direction of its own, and none of its scores is significant")
    print(f"tested in {result.seconds:.1f} s (estimated {describe(estimate)}); wrote {CONCEPTS_FILE} and "
          f"concepts.png to {out}", file=sys.stderr)


def _tcav_settings(args: argparse.Namespace):
    """The concept test's settings as given (``--runs``, ``--seed``, ...), checked, with defaults for the rest."""
    from explainers.concepts.tcav import TCAV, tcav_settings

    return tcav_settings(**_given(args, TCAV.params, _setting_dest))


def run_discover(args: argparse.Namespace) -> None:
    from explainers.concepts.factorisation import (
        DISCOVERED_FILE,
        FACTORISATION,
        check_discovery,
        discover_concepts,
        discovery_seconds,
        factorisation_settings,
    )
    from explainers.concepts.tcav import dataset_images, tcav_settings
    from explainers.errors import counted
    from explainers.estimates import describe
    from explainers.reports.factorisation import CELL, write_json, write_pictures

    # Bad values are one sentence before any model loads or folder is read or made.
    settings = factorisation_settings(**_given(args, FACTORISATION.params, _setting_dest))
    options = _dataset_options(args)
    model = _load(args)
    # Each class's images read as the concept test reads them: up to --images of them, drawn with the seed.
    found = dataset_images(model, args.data, _names(args.classes),
                           tcav_settings(class_images=settings.images, seed=settings.seed), False, options["mapping"])
    if found.unknown_folders:
        _warn(f"class folders the model has no class for: {', '.join(found.unknown_folders)}")
    _note_each("skipped", found.skipped)
    if not found.classes:
        raise InputError(f"The dataset '{echo(args.data)}' has no readable image of the classes asked for.")
    layer = args.layer
    for item in found.classes:  # every class checked before the first pass
        layer = check_discovery(model, args.layer, item.name, len(item.images), settings)
    estimate = sum(discovery_seconds(model, len(item.images), layer, settings.components, options["batch_size"])
                   for item in found.classes)
    classes = counted(len(found.classes), "class", "classes")
    print(f"layer {layer}: {settings.components} concepts per class for {classes} ("
          f"{', '.join(f'{item.name} {len(item.images)}' for item in found.classes)} images); estimate: "
          f"{describe(estimate)}", file=sys.stderr)
    out = _out_dir(args.out)
    discoveries = []
    with _progress_bar() as bar:
        for item in found.classes:
            task = bar.add_task(f"Class {item.name}", total=None)

            def progress(done: int, total: int, task=task) -> None:
                bar.update(task, completed=done, total=total)

            discoveries.append(discover_concepts(model, item.images, item.index, layer,
                                                 batch_size=options["batch_size"], on_progress=progress,
                                                 **vars(settings)))
    height, width = model.input_size
    pictures = write_pictures(discoveries, out, (CELL, max(1, round(CELL * width / height))))
    write_json(discoveries, out, pictures)
    for discovery in discoveries:
        shares = ", ".join(f"{concept.importance:+.3g} ({concept.share:+.0%})" for concept in discovery.concepts)
        print(f"{discovery.class_name}: {len(discovery.concepts)} concepts at {discovery.layer} from "
              f"{counted(len(discovery.images), 'image')} in {discovery.seconds:.1f} s (reconstruction error "
              f"{discovery.reconstruction_error:.2f}); importance to the class logit: {shares}")
        for note in discovery.notes:
            print(f"  {discovery.class_name}: {note}", file=sys.stderr)
    print(f"wrote {DISCOVERED_FILE} and {counted(len(pictures), 'picture')} to {out}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    from explainers.concepts.strategies import BY as STRATEGY_BY
    from explainers.concepts.strategies import STRATEGIES as STRATEGY_PARAMS
    from explainers.concepts.tcav import TCAV as TCAV_PARAMS
    from explainers.learned import PARAMS
    from explainers.methods.registry import REGISTRY
    from explainers.models.loading import DEFAULT_MODEL
    from explainers.options import CURVE_STEPS, PER_CLASS, SEED
    from explainers.trust.masks import STROKE_THRESHOLD
    from explainers.trust.scoring import TARGETS

    parser = argparse.ArgumentParser(prog="python -m explainers", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plugins = _plugin_parser()
    model = argparse.ArgumentParser(add_help=False, parents=[plugins])
    model.add_argument("--model", default=DEFAULT_MODEL,
                       help="efficientnet_lite0 (embedded), digits_cnn, keras:<Application> or a model path (default %(default)s)")
    model.add_argument("--labels", type=Path, help="class names: JSON list or dict, one per line, or a {0: 'cat'} dict")
    model.add_argument("--preprocess", choices=list(PRESETS),
                       help=f"input preset for a model file (default: detected): {describe_presets()}")
    model.add_argument("--output", help="for a model with several outputs, the one to explain")

    layers = commands.add_parser("layers", parents=[model], help="list the layers a CAM method can use, in order")
    layers.set_defaults(run=run_layers)

    listing = commands.add_parser("methods", parents=[plugins],
                                  help="the registered methods and their parameters, as a Markdown table")
    listing.set_defaults(run=run_methods)
    metrics = commands.add_parser("metrics", parents=[plugins],
                                  help="the registered metrics (for `trust`) and their parameters, as a Markdown table")
    metrics.set_defaults(run=run_metrics)

    gradcam = commands.add_parser("gradcam", parents=[model], help="a Grad-CAM overlay per image x layer x class")
    gradcam.add_argument("--images", type=Path, required=True, help="folder of images")
    gradcam.add_argument("--layers", nargs="+", help="layer names, as `layers` prints them (default: three spread over depth)")
    gradcam.add_argument("--top", type=int, default=1, help="explain the top N predicted classes (default %(default)s)")
    gradcam.add_argument("--method", default="gradcam", choices=[n for n, m in REGISTRY.items() if m.cam_weights])
    gradcam.add_argument("--least", action="store_true", help="also explain each image's least likely class")
    gradcam.add_argument("--out", type=Path, required=True, help="output folder")
    gradcam.set_defaults(run=run_gradcam)

    compare = commands.add_parser("compare", parents=[model], help="the comparison grid per image and scores as CSV")
    compare.add_argument("--images", type=Path, required=True, help="folder of images")
    compare.add_argument("--methods", nargs="+", default=["saliency", "smoothgrad", "scorecam"], choices=list(REGISTRY))
    _add_param_options(compare, "", "Curves", (CURVE_STEPS,), _setting_dest)  # --steps
    compare.add_argument("--target", default="top",
                         help="the class to explain: top (each image's own), least (its least likely), a name or an index")
    compare.add_argument("--out", type=Path, required=True, help="output folder")
    _add_method_options(compare)
    compare.set_defaults(run=run_compare)

    visualize = commands.add_parser("visualize", parents=[model],
                                    help="what the model learned: inputs that maximise classes or a layer's channels")
    visualize.add_argument("--classes", nargs="+", help="class names or indices")
    visualize.add_argument("--layer", help="a layer, as `layers` prints it, whose --channels to visualise")
    visualize.add_argument("--channels", nargs="+", type=int, help="channel indices of --layer")
    _add_param_options(visualize, "", "Optimisation", PARAMS, _setting_dest)  # --steps, --tv-weight, ...
    visualize.add_argument("--animation", action="store_true",
                           help="also write the first target's optimisation as a GIF (from the same run)")
    visualize.add_argument("--out", type=Path, required=True, help="output folder")
    visualize.set_defaults(run=run_visualize)

    evaluate = commands.add_parser("evaluate", parents=[model], help="predictions, confusion matrix, metrics, class attention")
    evaluate.add_argument("--data", required=True,
                          help="folder of class subfolders: <data>/<class>/<image>; with --ray also a URI (s3://, gs://)")
    _add_dataset_options(evaluate)
    evaluate.add_argument("--out", type=Path, required=True, help="output folder")
    _add_ray_options(evaluate)
    evaluate.set_defaults(run=run_evaluate)

    trust = commands.add_parser(
        "trust", parents=[model], help="which method to trust: methods scored by metrics over a dataset, per class, "
                                       "with intervals; trust.json, rows/*.parquet and report.html",
        description="Score methods' maps of a dataset's images by metrics (faithfulness, randomisation, robustness, "
                    "complexity, and localisation given object masks): each method x metric's mean with a 95% "
                    "bootstrap interval, overall and per class, each metric's ranking and how stable it is, how far "
                    "the metrics agree, and a card per method. Prints the plan and the estimated time first.")
    trust.add_argument("--data", required=True, help="folder of class subfolders: <data>/<class>/<image> (or an "
                                                     "s3:// or gs:// URI)")
    objects = trust.add_mutually_exclusive_group()
    objects.add_argument("--masks", help="folder of object masks mirroring the images' paths under --data "
                                         "(<masks>/<class>/<image>.png, any image suffix; white = object)")
    objects.add_argument("--boxes", help="CSV of object boxes, rows path,x0,y0,x1,y1: the image's path under --data "
                                         "and a box in its pixels (several rows for one image: their union)")
    objects.add_argument("--strokes", nargs="?", type=int, const=STROKE_THRESHOLD, metavar="LEVEL",
                         help="each image's pixels brighter than LEVEL (0-254; default %(const)s) as its object: "
                              "the digits demo's strokes")
    trust.add_argument("--methods", nargs="+", metavar="METHOD",
                       help=f"methods to evaluate, space- or comma-separated (default: {', '.join(TRUST_METHODS)}); "
                            "`methods` lists them all")
    trust.add_argument("--layer", help="the layer CAM methods explain (default: the model's own CAM layer; `layers` "
                                       "lists them)")
    trust.add_argument("--metrics", nargs="+", metavar="METRIC",
                       help="metrics to score the maps by, space- or comma-separated (default: every metric the "
                            "inputs allow; localisation needs --masks, --boxes or --strokes); `metrics` lists them")
    trust.add_argument("--sample", metavar="N", help=f"{PER_CLASS.help} (default: all of them)")
    _add_param_options(trust, "", "Sample", (SEED,), _setting_dest)  # --seed
    trust.add_argument("--target", default="true", choices=list(TARGETS),
                       help="the class each map explains: true (the image's folder) or predicted (the model's top "
                            "class) (default %(default)s)")
    _add_dataset_options(trust)
    trust.add_argument("--out", type=Path, required=True, help="output folder")
    _add_ray_options(trust)
    _add_method_options(trust)
    _add_metric_options(trust)
    trust.set_defaults(run=run_trust)

    strategies = commands.add_parser(
        "strategies", parents=[plugins],
        help="each class's Grad-CAMs from a results folder clustered into strategies (SpRAy); strategies.json and a "
             "picture per class, with possible shortcuts flagged",
        description="Cluster each class's stored Grad-CAMs into the distinct strategies the model uses (spectral "
                    "clustering as in SpRAy, the number chosen by the eigengap), and say where each strategy's mass "
                    "lies: on the border, in a corner, in the centre and, with --masks, on the object. A strategy "
                    "resting mostly in a corner, on the border or off the object is flagged as a possible shortcut.")
    strategies.add_argument("--results", type=Path, required=True,
                            help="a results folder: results.json and rows/*.parquet, as evaluate --out writes")
    strategies.add_argument("--classes", dest="classes", nargs="+", metavar="NAME",
                            help="classes to cluster, by name (default: every class with enough maps)")
    strategies.add_argument("--masks", help="folder of object masks mirroring the images' paths under the evaluated "
                                            "folder (<masks>/<class>/<image>.png, any image suffix; white = object)")
    _add_param_options(strategies, "", "Strategies", (*STRATEGY_PARAMS.params, STRATEGY_BY), _setting_dest)
    strategies.add_argument("--out", type=Path, required=True, help="output folder")
    strategies.set_defaults(run=run_strategies)

    concepts = commands.add_parser(
        "concepts", parents=[model],
        help="TCAV: do the model's classes rely on concepts given as image folders? concepts.json and concepts.png",
        description="Learn a concept activation vector (CAV) per concept folder against random images at a layer, "
                    "score each class by the share of its images whose logit rises along it, and test each score "
                    "against pseudo-concepts (random sets in the concept's role), corrected by Holm over concepts x "
                    "classes. Prints the plan and the estimated time first.")
    concepts.add_argument("--data", required=True,
                          help="folder of class subfolders whose images are scored: <data>/<class>/<image>")
    concepts.add_argument("--concept", action="append", required=True, metavar="NAME=DIR",
                          help="a concept: its name and a folder of images showing it (repeatable)")
    concepts.add_argument("--random", metavar="DIR",
                          help="folder of random images (default: drawn from --data's images not being scored)")
    concepts.add_argument("--layer", help="the layer (default: the model's own CAM layer; `layers` lists them)")
    concepts.add_argument("--classes", nargs="+", metavar="CLASS",
                          help="classes to score, names or indices, space- or comma-separated (default: every class "
                               "with images in --data)")
    _add_param_options(concepts, "", "Concept test", TCAV_PARAMS.params, _setting_dest)  # --runs, --seed, ...
    _add_dataset_options(concepts)
    concepts.add_argument("--out", type=Path, required=True, help="output folder")
    concepts.set_defaults(run=run_concepts)

    from explainers.concepts.factorisation import FACTORISATION as DISCOVERY_PARAMS

    discover = commands.add_parser(
        "discover", parents=[model],
        help="concepts without examples: each class's concepts found by factorising a layer's activations (NMF); "
             "discovered.json and a picture per class",
        description="Factorise a layer's activations over each class's images into non-negative concepts (NMF, as "
                    "Deep Feature Factorization and CRAFT do): each concept's heatmaps on the images where it is "
                    "strongest, its best-matching crops, and its first-order importance to the class logit. Prints "
                    "the estimated time first.")
    discover.add_argument("--data", required=True,
                          help="folder of class subfolders whose images are factorised: <data>/<class>/<image>")
    discover.add_argument("--classes", nargs="+", required=True, metavar="CLASS",
                          help="classes whose concepts to find, names or indices, space- or comma-separated")
    discover.add_argument("--layer", help="the layer (default: the model's own CAM layer; `layers` lists them)")
    _add_param_options(discover, "", "Concept discovery", DISCOVERY_PARAMS.params, _setting_dest)  # --components, ...
    _add_dataset_options(discover)
    discover.add_argument("--out", type=Path, required=True, help="output folder")
    discover.set_defaults(run=run_discover)

    results = commands.add_parser("report", parents=[plugins],
                                  help="the evaluate reports (CSV, PNG, metrics) from a results folder, with no model "
                                       "pass")
    results.add_argument("--results", type=Path, required=True,
                         help="a results folder: results.json and rows/*.parquet, as evaluate --out writes")
    results.add_argument("--out", type=Path, help="output folder (default: the results folder)")
    results.set_defaults(run=run_report)
    return parser


def _plugin_failures(paths: Sequence[str]) -> bool:
    """Import the plugin files; print one line per file that failed, and say whether any did."""
    errors = load_plugins(paths)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return bool(errors)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Plugins first: the parser gives the methods and metrics they register their --<name>-<parameter> options.
    if _plugin_failures(_plugin_parser().parse_known_args(argv)[0].plugin):
        return EXIT_BAD_INPUT
    try:
        args = _parser().parse_args(argv)
        if _plugin_failures(args.plugin):  # one the first look missed (an abbreviated --plug): loaded, without options
            return EXIT_BAD_INPUT
        args.run(args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0
