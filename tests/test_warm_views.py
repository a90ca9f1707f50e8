"""Warm views cost little: pictures and charts are made once per content and display setting and shared by
sessions, a display setting seen before recolours nothing, and the heap Python's collector walks after every
script run stays small."""

import gc
import weakref

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import explainers as ex
from conftest import PROJECT_ROOT
from explainers.reports import render
from ui import cached


@pytest.fixture
def encodes(monkeypatch) -> list:
    """Every picture encoded from now on (a cached picture is not encoded again)."""
    made = []
    original = render.jpeg_bytes

    def spy(image, *args, **kwargs):
        made.append(image.shape)
        return original(image, *args, **kwargs)

    monkeypatch.setattr(render, "jpeg_bytes", spy)
    return made


def _session(page: str, params: dict | None = None) -> AppTest:
    """A new visitor: a fresh session opening ``page``."""
    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard.py"), default_timeout=300)
    at.query_params.update(params or {})
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def test_pictures_are_the_bytes_st_image_makes_of_the_array():
    from streamlit.elements.lib.image_utils import _np_array_to_bytes

    rng = np.random.default_rng(0)
    for shape in [(300, 451, 3), (200, 133, 3), (14, 14, 3)]:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        assert render.jpeg_bytes(image) == _np_array_to_bytes(image, "auto")


def test_a_second_visitor_of_the_overview_encodes_and_computes_nothing(encodes, monkeypatch):
    st.cache_data.clear()
    _session("views/overview.py")
    assert encodes  # the first visitor's photos and overlays
    explained = []
    original = ex.explain
    monkeypatch.setattr(ex, "explain", lambda *a, **k: explained.append(a) or original(*a, **k))
    encodes.clear()
    second = _session("views/overview.py")
    assert encodes == [] and explained == []
    assert sum(1 for e in second.main if type(e).__name__ == "Image") == 4  # two photos, two Grad-CAMs


def test_a_colormap_seen_before_recolours_nothing_and_no_setting_computes_a_map(encodes, monkeypatch):
    grids = []
    original = ex.layer_grid
    monkeypatch.setattr(ex, "layer_grid", lambda *a, **k: grids.append(a) or original(*a, **k))
    st.cache_data.clear()  # other tests may have drawn these cells already
    at = _session("views/layer_grid.py")
    computed = len(grids)
    at.selectbox(key="grid_colormap").set_value("viridis").run()
    assert encodes  # a new colormap recolours the cells once
    encodes.clear()
    at.selectbox(key="grid_colormap").set_value("jet").run()
    at.selectbox(key="grid_colormap").set_value("viridis").run()
    assert not at.exception
    assert encodes == []  # both were seen: every cell comes from the cache
    assert len(grids) == computed  # and no display setting reached the engine


def test_a_second_visitor_of_the_comparison_computes_and_encodes_nothing(encodes, monkeypatch):
    link = {"cmp_methods": ["saliency", "gradcam"]}
    _session("views/compare.py", link)
    calls = []
    original = ex.attribute

    def spy(model, images, *args, **kwargs):
        result = original(model, images, *args, **kwargs)
        calls.append(result.cached == len(images))
        return result

    monkeypatch.setattr(ex, "attribute", spy)
    encodes.clear()
    stored = len(ex.RESULTS)
    second = _session("views/compare.py", link)
    assert calls and all(calls) and len(ex.RESULTS) == stored  # every map from the engine's cache
    assert encodes == []
    assert any("deletion AUC" in d.value.columns for d in second.dataframe)


def test_a_second_visitor_of_the_dataset_page_is_drawn_in_one_run_from_the_cache(monkeypatch):
    _session("views/dataset.py")
    passes = []
    original = ex.datasets.evaluate_iter

    def spy(*args, cached_only=False, **kwargs):
        passes.append(cached_only)
        return original(*args, cached_only=cached_only, **kwargs)

    monkeypatch.setattr(ex.datasets, "evaluate_iter", spy)
    second = _session("views/dataset.py")
    assert passes == [True]  # gathered from the per-file cache: no run, so no Stop button and no rerun
    assert not [b for b in second.button if b.key == "ds_stop"]
    assert next(m.value for m in second.metric if m.label == "Images") == "1,000"


def test_settling_the_heap_freezes_what_lives_and_reclaims_what_died_since():
    class Node:
        pass

    node = Node()
    node.self = node  # a cycle: only the cyclic collector can free it
    alive = weakref.ref(node)
    try:
        cached.settle_heap()
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert alive() is not None  # frozen: a full collection after a script run does not walk it
        cached.settle_heap()  # the next model load
        assert alive() is None
    finally:
        gc.unfreeze()


def test_a_failed_warm_up_still_settles_the_heap(monkeypatch):
    settled = []
    monkeypatch.setattr(cached, "settle_heap", lambda: settled.append(True))

    class Runtime:
        def warm_up(self, layer):
            raise RuntimeError("trace failed")

    class Model:
        runtime, default_cam_layer = Runtime(), None

    with pytest.raises(RuntimeError):
        cached._warm_up(Model())
    assert settled == [True]
