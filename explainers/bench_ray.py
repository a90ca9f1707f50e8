"""The Ray part of ``python -m explainers.bench --dataset``: Ray local with 2 actors next to in-process, same cores.

Both score one folder: the digits demo repeated with small variations (as given,
shifted, shifted with noise), large enough that Ray's steady state shows. Each
repeat runs in-process (``datasets.evaluate``, TensorFlow on every core) and then
``evaluate_on_ray`` on a Ray started for the run (2 actors, one TensorFlow thread
each); the ratios are medians of the per-repeat ratios. Ray's start-up (starting
Ray, its workers importing the engine, the actors loading the model) is reported
apart from the steady rate after the first batch arrives.

Per-batch costs, for the README's scaling model, are measured inside a Ray actor
set up as the scoring actors are (one TensorFlow thread): reading and decoding a
batch, the model's pass on it, for the digits and for a batch of the sample
photos through the embedded model; the Parquet write is timed on the driver.
What Ray adds per batch is the CPU time the steady rate leaves over after those.
"""

from __future__ import annotations

import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ACTORS = 2
COPIES = 8  # 8,000 images
PHOTO_BATCH = 64  # the embedded model's per-batch costs: the sample photos (JPEG and PNG, 300 to 640 px) as one batch


def varied_digits(root: Path, copies: int, seed: int = 0) -> Path:
    """The digits demo ``copies`` times over under ``root/<digit>/``: as given, shifted by a pixel, then shifted
    with Gaussian noise (sigma 6 grey levels): the same task, not the same pixels."""
    from PIL import Image

    from explainers.inputs.samples import DIGITS_TEST_FOLDER

    rng = np.random.default_rng(seed)
    for path in sorted(Path(DIGITS_TEST_FOLDER).glob("*/*.png")):
        pixels = np.asarray(Image.open(path).convert("L")).astype(np.int16)
        (root / path.parent.name).mkdir(parents=True, exist_ok=True)
        for copy in range(copies):
            varied = np.roll(pixels, (copy % 3 - 1, (copy // 3) % 3 - 1), axis=(0, 1)) if copy else pixels
            if copy >= 2:
                varied = varied + rng.normal(0, 6, varied.shape).round().astype(np.int16)
            Image.fromarray(np.clip(varied, 0, 255).astype(np.uint8)).save(root / path.parent.name / f"{path.stem}_{copy}.png")
    return root


class _CostProbe:
    """A Ray actor set up as the scoring actors are (one TensorFlow thread), timing a batch's read and model pass."""

    def __init__(self, specs: dict, threads: int) -> None:
        from explainers.distributed.cluster import limit_threads

        limit_threads(threads)
        self.models = {name: spec.load() for name, spec in specs.items()}

    def measure(self, name: str, sources: list[str], paths: list[str], root: str, remote: bool,
                repeats: int) -> dict[str, float]:
        """Median seconds to read and decode ``sources`` as one batch, and for the model's pass on it."""
        from explainers.datasets.scoring import score_rows
        from explainers.distributed.dataset_pipeline import read_batch

        model = self.models[name]
        batch = {"source": np.asarray(sources, dtype=object), "path": np.asarray(paths, dtype=object),
                 "true": np.zeros(len(paths), np.int32)}
        read, passes = [], []
        for _ in range(repeats + 1):  # the first traces the model's pass
            start = time.perf_counter()
            decoded = read_batch(batch, root=root, remote=remote, size=tuple(model.input_size))
            middle = time.perf_counter()
            score_rows(model, paths, [0] * len(paths), list(decoded["pixels"]), model.default_cam_layer)
            read.append(middle - start)
            passes.append(time.perf_counter() - middle)
        return {"read": statistics.median(read[1:]), "model": statistics.median(passes[1:])}


def _write_seconds(out: Path, rows: int, batch_size: int) -> float:
    """Seconds per batch the driver spends writing Parquet: the whole run's rows written again, divided out."""
    import pyarrow.parquet as pq

    from explainers.datasets import storage

    table = pq.read_table(out / storage.ROWS_FOLDER)
    start = time.perf_counter()
    storage.write_rows(out / "again", table)
    return (time.perf_counter() - start) / (rows / batch_size)


def _one_size(model, data: Path, folder: Path, repeats: int, batch_size: int) -> dict[str, list[float]]:
    """Per repeat: in-process images/s, then Ray's whole-run and steady images/s and its fixed seconds."""
    from explainers import datasets
    from explainers.distributed.dataset_pipeline import evaluate_on_ray

    found: dict[str, list[float]] = {"local": [], "whole": [], "steady": [], "fixed": []}
    datasets.evaluate(model, data, batch_size=batch_size)  # traces the in-process passes at this batch size
    for repeat in range(repeats):
        datasets.PER_FILE.clear()
        start = time.perf_counter()
        count = len(datasets.evaluate(model, data, batch_size=batch_size).files)
        found["local"].append(count / (time.perf_counter() - start))
        start = time.perf_counter()
        # A progress callback turns Ray Data's own progress lines off.
        run = evaluate_on_ray(model, data, folder / f"ray{batch_size}-{repeat}", actors=ACTORS, batch_size=batch_size,
                              on_progress=lambda done, total: None)
        took = time.perf_counter() - start
        first = run.arrivals[0][0]
        found["whole"].append(run.rows / took)
        found["steady"].append(sum(rows for _, rows in run.arrivals[1:]) / (run.arrivals[-1][0] - first))
        found["fixed"].append(took - (run.arrivals[-1][0] - first))  # before the first batch and after the last
    found["rows"] = [run.rows]
    return found


def _ratio(runs: dict[str, list[float]], key: str) -> float:
    """The median of the per-repeat ratios in-process / Ray: how many times slower Ray is on the same cores."""
    return statistics.median(a / b for a, b in zip(runs["local"], runs[key]))


def bench(repeats: int, batch_sizes: tuple[int, ...] = (64, 256)) -> None:
    """Print images/s in-process and on Ray local with ACTORS actors, their ratios and the per-batch costs."""
    from explainers.distributed.session import import_ray
    from explainers.errors import InputError

    # A token of the bench's own, in memory: Ray would otherwise write one to ~/.ray.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    try:
        ray = import_ray()
    except InputError as error:
        print(f"\nRay local: not measured. {error}")
        return
    import logging

    from explainers.datasets.sources import list_images
    from explainers.distributed.cluster import ModelSpec, local_cpus
    from explainers.distributed.session import ray_session
    from explainers.inputs.samples import sample_images
    from explainers.models.loading import DIGITS_MODEL, load_model

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    model = load_model(DIGITS_MODEL)
    cores = os.cpu_count() or 1
    median = statistics.median
    with tempfile.TemporaryDirectory() as folder:
        data = varied_digits(Path(folder) / "data", COPIES)
        found = {size: _one_size(model, data, Path(folder), repeats, size) for size in batch_sizes}
        with ray_session("local", local_cpus(ACTORS, 1.0)):
            photos_model = load_model()
            specs = {"digits": ModelSpec.of(model), "photos": ModelSpec.of(photos_model)}
            probe = ray.remote(num_cpus=1)(_CostProbe).remote(specs, 1)
            listing = list_images(data, model)
            costs = {size: ray.get(probe.measure.remote("digits", listing.sources[:size], listing.paths[:size],
                                                        listing.root, False, max(5, repeats)))
                     for size in batch_sizes}
            photos = [str(path) for path in sample_images().values()]
            photos = (photos * PHOTO_BATCH)[:PHOTO_BATCH]
            photo_costs = ray.get(probe.measure.remote("photos", photos, photos, "", False, 3))
        for size in batch_sizes:
            rows = int(found[size]["rows"][0])  # a count, kept among the run's figures
            costs[size]["write"] = _write_seconds(Path(folder) / f"ray{size}-0", rows, size)
    count = found[batch_sizes[0]]["rows"][0]
    print(f"\n{count:,} digits (the demo {COPIES} times, shifted and noised), {cores} cores: in-process next to "
          f"Ray local with {ACTORS} actors (1 TensorFlow thread each), medians of {repeats}\n")
    print(f"{'run':42s} {'images/s':>9s} {'fixed s':>8s} {'in-process / Ray':>17s}")
    for size in batch_sizes:
        runs = found[size]
        print(f"{f'in-process, batches of {size}':42s} {median(runs['local']):9.0f}")
        print(f"{f'Ray local, batches of {size}, whole run':42s} {median(runs['whole']):9.0f} "
              f"{median(runs['fixed']):8.1f} {_ratio(runs, 'whole'):17.2f}")
        print(f"{f'Ray local, batches of {size}, after 1st batch':42s} {median(runs['steady']):9.0f} {'':8s} "
              f"{_ratio(runs, 'steady'):17.2f}")
    print("(fixed: starting and stopping Ray, its workers importing the engine, the actors loading the model: "
          "a run's time beyond its steady flow of batches)\n")
    print(f"{'per batch, ms':14s} {'read+decode':>11s} {'model pass':>11s} {'Parquet':>8s} {'Ray':>7s} "
          f"{'CPU in all':>11s}")
    for size in batch_sizes:
        cost = costs[size]
        total = cores * size / median(found[size]["steady"])  # CPU seconds a batch costs in Ray's steady state
        ray_share = total - cost["read"] - cost["model"] - cost["write"]
        print(f"{f'batch of {size}':14s} {cost['read'] * 1e3:11.1f} {cost['model'] * 1e3:11.1f} "
              f"{cost['write'] * 1e3:8.2f} {ray_share * 1e3:7.1f} {total * 1e3:11.1f}")
    print(f"{'photos, 64':14s} {photo_costs['read'] * 1e3:11.1f} {photo_costs['model'] * 1e3:11.1f}")
    print("(read+decode and the model pass timed inside an actor with 1 thread, the Parquet write on the driver; "
          "Ray: the rest of the CPU time a batch costs in the steady state; photos: the sample photos through "
          f"{photos_model.display_name} at {photos_model.input_size[0]} px, not run on Ray)")
