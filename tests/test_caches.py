"""The engine's caches in sight: ``clear_all`` names every one (read from the source, so a new cache cannot be
forgotten), empties them all, each is bounded and locked, and the pass costs live on the ``Runtime``."""

import ast
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import explainers as ex
from conftest import PROJECT_ROOT
from explainers import learned
from explainers.runtime import caches
from explainers.runtime.cache import ResultCache
from explainers.runtime.caches import CACHES, NOT_CACHES, clear_all
from explainers.runtime.lru import LruCache

ENGINE = PROJECT_ROOT / "explainers"
CACHE_CLASSES = {"ResultCache", "LruCache"}
CONTAINERS = {"dict", "OrderedDict", "defaultdict", "set", "list", "WeakKeyDictionary", "WeakValueDictionary"}
MEMOS = {"cache", "lru_cache"}


def _module_name(path: Path, root: Path = PROJECT_ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _called(node: ast.expr | None) -> str:
    """The last name of what ``node`` calls (``functools.lru_cache(maxsize=8)`` -> ``lru_cache``), or ""."""
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Attribute):
        return target.attr
    return target.id if isinstance(target, ast.Name) else ""


def _module_level_stores(engine: Path = ENGINE) -> tuple[set[str], set[str]]:
    """Every module-level cache object and memoised function in the engine's source, and every module-level empty
    container (which may be a cache filled as the engine runs), each as ``module.attribute``."""
    stores, containers = set(), set()
    for path in sorted(engine.rglob("*.py")):
        module = _module_name(path, engine.parent)
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and any(_called(d) in MEMOS for d in node.decorator_list):
                stores.add(f"{module}.{node.name}")
            if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [f"{module}.{t.id}" for t in targets if isinstance(t, ast.Name)]
            value = node.value
            if isinstance(value, ast.Call) and _called(value) in CACHE_CLASSES:
                stores.update(names)
            empty_literal = (isinstance(value, ast.Dict) and not value.keys) or (
                isinstance(value, (ast.List, ast.Set)) and not value.elts)
            empty_call = isinstance(value, ast.Call) and _called(value) in CONTAINERS and not value.args
            if empty_literal or empty_call:
                containers.update(names)
    return stores, containers


def test_every_module_level_cache_in_the_engine_is_named_by_clear_all():
    named = {cache.name for cache in CACHES}
    stores, containers = _module_level_stores()
    assert {"explainers.attribution.RESULTS", "explainers.learned.TRACED"} <= stores  # the scan sees them
    assert stores - named == set(), "a cache clear_all does not name: add it to explainers/runtime/caches.CACHES"
    unclassified = containers - named - NOT_CACHES
    assert unclassified == set(), ("a module-level container that is neither in CACHES nor in NOT_CACHES: name it "
                                   "in explainers/runtime/caches.py")
    assert NOT_CACHES <= containers  # no stale exemption
    assert named <= stores | containers  # and no name that is no longer in the source
    assert len(named) == len(CACHES)


def test_the_scan_would_see_a_cache_added_anywhere(tmp_path):
    """The check above is honest: a ResultCache, a dict or a memo added to a module shows up in the scan."""
    module = ENGINE / "learned.py"
    source = module.read_text(encoding="utf-8")
    copy = tmp_path / "explainers"
    copy.mkdir()
    (copy / "learned.py").write_text(source + "\nNEW_RESULTS = ResultCache(max_bytes=1)\n_SEEN: dict = {}\n"
                                     "@functools.lru_cache\ndef memo(x):\n    return x\n", encoding="utf-8")
    stores, containers = _module_level_stores(copy)
    assert {"explainers.learned.NEW_RESULTS", "explainers.learned.memo"} <= stores
    assert "explainers.learned._SEEN" in containers


def _fill_by_hand(cache: caches.EngineCache) -> None:
    """One entry in a cache the cheap calls below left empty (a dataset's files, trust values, sanity clones)."""
    store = cache.store()
    if isinstance(store, ResultCache):
        store.put(("filled by test_caches",), 0, np.zeros(1))
    elif isinstance(store, LruCache):
        store.get_or_make(("filled by test_caches",), object)
    elif isinstance(store, dict):
        store[("filled by test_caches",)] = object()
    else:
        raise AssertionError(f"{cache.name} cannot be filled by hand: {type(store).__name__}")


def test_clear_all_empties_every_cache_filled_first():
    from explainers.concepts.factorisation import nmf_seconds
    from explainers.models import labels
    from explainers.trust.faithfulness import road_map_seconds

    model = ex.load_model(ex.DIGITS_MODEL)
    image = (np.random.default_rng(0).random((28, 28, 3)) * 255).astype(np.uint8)
    try:
        ex.attribute(model, [image], "saliency")  # maps and the preprocessed batch
        learned.class_visualization(model, [0], steps=10)  # a picture and its traced pixel model
        model.runtime.pass_cost()
        road_map_seconds((8, 8))
        labels.imagenet_class_names()
        labels.imagenet_wordnet_ids()
        nmf_seconds(64, 8, 2)  # NMF's cost probed once per shape
        assert model.fingerprint
        for cache in CACHES:
            if not len(cache):
                _fill_by_hand(cache)
        assert {cache.name: len(cache) > 0 for cache in CACHES} == {cache.name: True for cache in CACHES}
    finally:
        clear_all()
    assert {cache.name: len(cache) for cache in CACHES} == {cache.name: 0 for cache in CACHES}
    # Cleared, not broken: the engine fills them again.
    assert ex.attribute(model, [image], "saliency").raw.shape == (1, 28, 28) and len(ex.RESULTS) > 0


def test_clear_all_empties_a_cache_a_test_swapped_in(monkeypatch):

    from explainers.scores import sanity

    swapped: LruCache[object] = LruCache(2)
    swapped.get_or_make("one", object)
    monkeypatch.setattr(sanity, "COPIES", swapped)
    clear_all()
    assert len(swapped) == 0


def test_an_lru_cache_keeps_the_most_recently_used_and_builds_each_once_under_concurrency():
    cache: LruCache[str] = LruCache(2)
    cache.get_or_make("a", lambda: "A")
    cache.get_or_make("b", lambda: "B")
    cache.get_or_make("a", lambda: "not built: a is kept")
    cache.get_or_make("c", lambda: "C")  # b, the least recently used, goes
    assert cache.items() == [("a", "A"), ("c", "C")]

    builds = []

    def slow() -> str:
        builds.append(threading.get_ident())
        time.sleep(0.05)
        return "built"

    threads = [threading.Thread(target=cache.get_or_make, args=("d", slow)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and len(cache) == 2
    with pytest.raises(ValueError):
        LruCache(0)


def test_the_traced_pixel_models_are_bounded():
    assert isinstance(learned.TRACED, LruCache) and learned.TRACED.max_entries == learned.MAX_TRACED == 8


def test_pass_costs_are_a_method_of_the_runtime_and_kept_per_network():
    from explainers.runtime.passes import PASS_COSTS, PROBE_IMAGES, Runtime

    model = ex.load_model(ex.DIGITS_MODEL)
    PASS_COSTS.pop(model.network_fingerprint, None)
    cost = model.runtime.pass_cost()
    assert PASS_COSTS[model.network_fingerprint] is cost
    at = cost.sizes.index(PROBE_IMAGES)
    assert model.runtime.pass_seconds() == (cost.backward[at] / PROBE_IMAGES, cost.forward[at] / PROBE_IMAGES)
    # The same network loaded again, or under other class names, is not timed again: its runtime finds the timing.
    again = ex.load_model(ex.DIGITS_MODEL).variant([f"digit {d}" for d in range(10)])
    before = again.runtime.passes_run
    assert again.runtime.pass_cost() is cost and again.runtime.passes_run == before
    # A runtime without a network's fingerprint keeps its own timing and leaves the shared ones alone.
    alone = Runtime(model.model, model.output_kind)
    known = dict(PASS_COSTS)
    own = alone.pass_cost()
    assert alone.pass_cost() is own and dict(PASS_COSTS) == known


def _imports(path: Path) -> set[str]:
    """Every ``explainers`` module ``path`` imports, anywhere in it (type-checking blocks and functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    modules = {_module_name(p) for p in ENGINE.rglob("*.py")}
    return {name for name in found if name in modules}


def test_the_passes_no_longer_import_the_model_loader():
    """``models/loading.py`` imports ``runtime/passes.py`` (a model owns its runtime); the passes, pricing
    themselves now, import nothing that leads back to the loader."""
    graph = {_module_name(p): _imports(p) for p in ENGINE.rglob("*.py")}
    assert "explainers.runtime.passes" in graph["explainers.models.loading"]
    reached, todo = set(), ["explainers.runtime.passes"]
    while todo:
        for name in graph.get(todo.pop(), ()):
            if name not in reached:
                reached.add(name)
                todo.append(name)
    assert "explainers.models.loading" not in reached and "explainers.runtime.passes" not in reached
