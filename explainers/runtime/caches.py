"""Every cache the engine keeps across calls, named in one place: ``clear_all()`` empties them all, so a test can
start from nothing (a fresh server's state) without knowing where each cache lives.

A cache is named by its module and attribute and looked up when used, so a test that swaps one for its own
(``monkeypatch.setattr``) still has the one in use emptied, and this module imports none of the modules it names
(it sits below all of them, with no circle). ``tests/test_caches.py`` reads the engine's source and
fails when a module-level cache is neither named here nor in ``NOT_CACHES``.

Not here: ``attribution.IN_FLIGHT`` (locks held while a computation runs, no results), and the caches of one object
(a ``Runtime``'s compiled probes, a ``LoadedModel``'s layers), which go with it.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EngineCache:
    """One cache, by where it lives: a ``ResultCache``, an ``LruCache``, a dict, or a function's ``functools``
    memo. The module is imported by name when the cache is used: this module sits below everything it names."""

    module: str  # "explainers.attribution"
    attribute: str  # "RESULTS"
    lock: str = ""  # the module's lock that guards the cache, for a plain dict filled under one

    @property
    def name(self) -> str:
        return f"{self.module}.{self.attribute}"

    def store(self) -> Any:
        """The cache itself, as the module holds it now."""
        return getattr(importlib.import_module(self.module), self.attribute)

    def clear(self) -> None:
        store = self.store()
        if hasattr(store, "cache_clear"):  # a functools memo
            store.cache_clear()
            return
        lock = getattr(importlib.import_module(self.module), self.lock) if self.lock else contextlib.nullcontext()
        with lock:
            store.clear()

    def __len__(self) -> int:
        store = self.store()
        return store.cache_info().currsize if hasattr(store, "cache_info") else len(store)


CACHES: tuple[EngineCache, ...] = (
    EngineCache("explainers.attribution", "RESULTS"),  # every method's maps
    EngineCache("explainers.attribution", "INPUTS"),  # preprocessed batches
    EngineCache("explainers.datasets.in_process", "PER_FILE"),  # a dataset's images scored, per file
    EngineCache("explainers.learned", "VISUALIZATIONS"),  # optimised pictures
    EngineCache("explainers.learned", "TRACED"),  # traced pixel models
    EngineCache("explainers.trust.scoring", "VALUES"),  # trust metrics' values per map
    EngineCache("explainers.runtime.passes", "PASS_COSTS"),  # measured pass costs, per network
    EngineCache("explainers.scores.sanity", "COPIES"),  # randomised clones, sanity check
    EngineCache("explainers.trust.faithfulness", "ROAD_MAP_SECONDS"),  # ROAD's imputation timed, per map size
    EngineCache("explainers.models.loading", "_fingerprint"),  # result fingerprints, memoised
    EngineCache("explainers.models.labels", "imagenet_class_names"),  # ImageNet's names, read once
    EngineCache("explainers.models.labels", "imagenet_wordnet_ids"),  # and its WordNet ids
    EngineCache("explainers.concepts.factorisation", "_nmf_iteration_seconds"),  # NMF's cost probed, per shape
)

# Module-level dicts that the engine fills as it runs but that hold no computed result: what was registered or
# imported. Emptying them would forget methods, metrics and plugins, not a cache.
NOT_CACHES = frozenset({
    "explainers.methods.registry.REGISTRY",
    "explainers.trust.registry.METRICS",
    "explainers.plugins._LOADED",  # plugin files imported: imported again, they would register twice
    "explainers.plugins._ENVIRONMENT",
})


def clear_all() -> None:
    """Empty every cache in ``CACHES``."""
    for cache in CACHES:
        cache.clear()
