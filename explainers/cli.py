"""``python -m explainers``: the dashboard's views in bulk, written to a folder, with the same engine.

Subcommands: ``layers``, ``gradcam``, ``compare``, ``evaluate``, ``report``; ``--help`` on each.
A bad input prints one line on stderr and exits with status 2; a bad image
among many is skipped and reported.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from explainers.errors import InputError, echo
from explainers.inputs.data_roots import check_path
from explainers.inputs.images import IMAGE_SUFFIXES
from explainers.models.preprocessing import PRESETS, describe_presets

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
    print(f"{'#':>4}  {'layer':48s} {'type':24s} {'resolution':>10s} {'channels':>8s}")
    for index, info in enumerate(model.layers, 1):
        print(f"{index:4d}  {info.path:48s} {info.class_name:24s} {info.resolution:>10s} {info.channels or 0:8d}")
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

    model = _load(args)
    names, images = _read_images(args.images)
    out = _out_dir(args.out)
    results, curves = {}, {}
    for method in _progress(list(args.methods), "Methods"):
        results[method] = attribute(model, images, method, targets=_target(args.target, len(images)),
                                    **_method_params(args, method))
        curves[method] = deletion_insertion(model, images, results[method], steps=args.steps)
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
    from explainers.datasets.distributed import ModelSpec, evaluate_on_ray
    from explainers.datasets.ray_session import import_ray
    from explainers.datasets.results import open_results

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
                              mapping_mode=args.mapping, actors=args.actors, cpus_per_actor=args.cpus_per_actor,
                              gpus_per_actor=args.gpus_per_actor, batch_size=args.batch_size, on_listed=listed,
                              on_progress=lambda done, total: bar.update(task, completed=done, total=total))
    _write_reports(open_results(out), out, f"{run.seconds:.0f} s on {run.runner} with {args.actors} actor(s), "
                                            f"start-up included; results in {out}")


def _write_reports(evaluation, out: Path, done: str) -> None:
    """The evaluate files from ``evaluation`` in ``out``, a warning per skipped file, and one summary line."""
    from explainers.datasets import report as report
    from explainers.datasets.evaluation import read_image

    for file, reason in evaluation.skipped:
        _warn(f"{file}: {reason}")
    report.write_files(evaluation, out, read_image)
    print(f"accuracy {evaluation.accuracy:.4f} on {len(evaluation.files):,} images; {len(evaluation.skipped)} skipped; "
          f"{done}", file=sys.stderr)


def run_evaluate(args: argparse.Namespace) -> None:
    from explainers.datasets.evaluate import Evaluation, evaluate_iter
    from explainers.datasets.evaluation import is_uri
    from explainers.datasets.mapping import map_classes
    from explainers.datasets.results import write_results
    from explainers.datasets.scan import scan_folder

    model = _load(args)
    if args.ray is not None:
        _evaluate_on_ray(args, model)
        return
    if is_uri(args.data):
        raise InputError(f"'{args.data}' is a URI; without --ray, evaluate reads local folders only: add --ray to read "
                         "it through pyarrow.")
    scan = scan_folder(args.data)
    out = _out_dir(args.out)
    mapping = map_classes(scan.folders, model, args.mapping)
    if mapping.unknown:
        _warn(f"class folders the model has no class for: {', '.join(mapping.unknown)}")
    evaluation = None
    steps = evaluate_iter(model, scan, mapping, batch_size=args.batch_size)
    with _progress_bar() as bar:
        task = bar.add_task("Evaluating", total=len(scan.files))
        for step in steps:
            if isinstance(step, Evaluation):
                evaluation = step
            else:
                bar.update(task, completed=step.done, total=step.total)
    write_results(out, evaluation, model)  # results.json + rows/: `report --results` redraws from them
    _write_reports(evaluation, out, f"results in {out}")


def run_report(args: argparse.Namespace) -> None:
    from explainers.datasets.results import open_results

    evaluation = open_results(args.results)  # no model: the results carry their class names
    out = _out_dir(args.out or args.results)
    _write_reports(evaluation, out, f"{evaluation.model_name} ({evaluation.runner}); reports in {out}")


def _option(method: str, param: str) -> str:
    return f"--{method}-{param}".replace("_", "-")


def _dest(method: str, param: str) -> str:
    return f"param__{method}__{param}"


def _method_params(args: argparse.Namespace, method: str) -> dict:
    """The parameters given on the command line for ``method`` (the rest keep their defaults)."""
    from explainers.methods.registry import REGISTRY

    given = {p.name: getattr(args, _dest(method, p.name), None) for p in REGISTRY[method].params}
    return {name: value for name, value in given.items() if value is not None}


def _add_method_options(parser: argparse.ArgumentParser) -> None:
    """``--<method>-<parameter>`` for every registered method's parameters, from their registrations."""
    from explainers.methods.registry import REGISTRY

    for name, method in REGISTRY.items():
        if not method.params:
            continue
        group = parser.add_argument_group(f"{method.label} parameters")
        for param in method.params:
            kind = (lambda text: text.lower() in ("1", "true", "yes", "on")) if param.kind is bool else param.kind
            group.add_argument(_option(name, param.name), dest=_dest(name, param.name), type=kind,
                               choices=list(param.choices) or None, metavar=None if param.choices else param.kind.__name__.upper(),
                               help=f"{param.help} ({param.describe()}; default {param.default})")


def _target(text: str, count: int):
    """``top`` -> each image's top class, ``least`` -> its least likely class, else a class name or index."""
    from explainers.runtime.targets import LEAST, TOP1

    if text == "top":
        return TOP1
    if text == "least":
        return LEAST
    return int(text) if text.isdigit() else text


def run_visualize(args: argparse.Namespace) -> None:
    from explainers.learned import UNMOVED_NOTE, Settings, animation_gif, channel_run, class_index, class_run
    from explainers.reports.render import compose_grid, safe_stem

    model = _load(args)
    out = _out_dir(args.out)
    if bool(args.classes) == bool(args.layer):
        raise InputError("Give either --classes (class names or indices) or --layer with --channels.")
    if args.layer and not args.channels:
        raise InputError("--layer needs --channels: the channel indices to visualise.")
    settings = {setting.name: getattr(args, setting.name) for setting in dataclasses.fields(Settings)}
    with _progress_bar() as bar:
        task = bar.add_task("Optimising", total=args.steps)

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        if args.classes:
            run = class_run(model, args.classes, report, **settings)
            names = [model.class_names[class_index(model, c)] for c in args.classes]
        else:
            run = channel_run(model, args.layer, args.channels, report, **settings)
            names = [f"{args.layer} channel {c}" for c in args.channels]
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


def _parser() -> argparse.ArgumentParser:
    from explainers.learned import Settings
    from explainers.methods.registry import REGISTRY
    from explainers.models.loading import DEFAULT_MODEL

    parser = argparse.ArgumentParser(prog="python -m explainers", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", default=DEFAULT_MODEL,
                       help="efficientnet_lite0 (embedded), digits_cnn, keras:<Application> or a model path (default %(default)s)")
    model.add_argument("--labels", type=Path, help="class names: JSON list or dict, one per line, or a {0: 'cat'} dict")
    model.add_argument("--preprocess", choices=list(PRESETS),
                       help=f"input preset for a model file (default: detected): {describe_presets()}")
    model.add_argument("--output", help="for a model with several outputs, the one to explain")

    layers = commands.add_parser("layers", parents=[model], help="list the layers a CAM method can use, in order")
    layers.set_defaults(run=run_layers)

    listing = commands.add_parser("methods", help="the registered methods and their parameters, as a Markdown table")
    listing.set_defaults(run=run_methods)

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
    compare.add_argument("--steps", type=int, default=16, help="deletion/insertion steps (default %(default)s)")
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
    for setting in dataclasses.fields(Settings):
        kind = int if str(setting.type).startswith("int") else float
        default = "" if setting.default is None else " (default %(default)s)"
        visualize.add_argument(f"--{setting.name.replace('_', '-')}", type=kind, default=setting.default,
                               help=setting.metadata["help"] + default)
    visualize.add_argument("--animation", action="store_true",
                           help="also write the first target's optimisation as a GIF (from the same run)")
    visualize.add_argument("--out", type=Path, required=True, help="output folder")
    visualize.set_defaults(run=run_visualize)

    evaluate = commands.add_parser("evaluate", parents=[model], help="predictions, confusion matrix, metrics, class attention")
    evaluate.add_argument("--data", required=True,
                          help="folder of class subfolders: <data>/<class>/<image>; with --ray also a URI (s3://, gs://)")
    evaluate.add_argument("--mapping", default="auto", choices=["auto", "by position", "by name", "by WordNet id"])
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--out", type=Path, required=True, help="output folder")
    ray = evaluate.add_argument_group("on a Ray cluster (needs ray[data])")
    ray.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                     help="score on Ray: alone or 'local' starts Ray on this machine, host:port joins a running cluster")
    ray.add_argument("--actors", type=int, default=1, help="model copies scoring batches in parallel (default %(default)s)")
    ray.add_argument("--cpus-per-actor", type=float, default=1.0,
                     help="CPU cores each actor reserves, and its TensorFlow threads (default %(default)s)")
    ray.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs each actor reserves (default %(default)s)")
    evaluate.set_defaults(run=run_evaluate)

    results = commands.add_parser("report", help="the evaluate reports (CSV, PNG, metrics) from a results folder, "
                                                 "with no model pass")
    results.add_argument("--results", type=Path, required=True,
                         help="a results folder: results.json and rows/*.parquet, as evaluate --out writes")
    results.add_argument("--out", type=Path, help="output folder (default: the results folder)")
    results.set_defaults(run=run_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0
