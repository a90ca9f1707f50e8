"""Bounded work: every request is estimated from the registrations before it runs, a long one waits for a button,
a hosted copy refuses one above its ceiling in one sentence, and work stops between batches once nobody waits."""

import dataclasses
import re
import threading

import pytest
from streamlit.testing.v1 import AppTest

import explainers as ex
from explainers import estimates, settings
from explainers.attribution import cached_maps
from explainers.runtime import stopping
from helpers import gap_dense_model, open_link, random_images, wrap
from ui import budget

# The link of the issue: one photo through Occlusion with a one-pixel patch and stride, 50,177 forward passes.
LONG_OCCLUSION = {"image_names": "coffee", "cmp_methods": "occlusion", "cmp_param_occlusion__patch": "1",
                  "cmp_param_occlusion__stride": "1"}


def _counting_passes(monkeypatch, model: ex.LoadedModel) -> dict[bool, int]:
    """Images ``model`` is sent through from now on, by kind of pass (backward: True)."""
    sent = {True: 0, False: 0}
    original = model.runtime.gradients

    def counting(x, targets, *args, backward=True, **kwargs):
        sent[backward] += len(x)
        return original(x, targets, *args, backward=backward, **kwargs)

    monkeypatch.setattr(model.runtime, "gradients", counting)
    return sent


@pytest.mark.parametrize("size, params, patches", [(224, {"patch": 56, "stride": 28}, 7 * 7),
                                                   (16, {"patch": 4, "stride": 4}, 4 * 4)])
def test_an_estimate_is_the_registered_passes_at_the_measured_cost_of_a_pass(monkeypatch, sample, embedded_model,
                                                                             size, params, patches):
    # The embedded model at 224 px, and a 16 px one: Occlusion's patches are counted at the model's own size.
    model = embedded_model if size == 224 else wrap(gap_dense_model(size))
    images = [sample("coffee")] if size == 224 else random_images(1, size)
    ex.RESULTS.clear()
    backward, forward = model.runtime.pass_seconds()
    method = ex.REGISTRY["occlusion"]
    registered = method.cost(ex.methods.registry.resolve_params(method, params), 1, 16, model.input_size)
    estimate = estimates.estimate_seconds(model, images, "occlusion", **params)

    sent = _counting_passes(monkeypatch, model)
    ex.attribute(model, images, "occlusion", **params)
    assert sent == {True: 0, False: 1 + patches}  # the unoccluded image, then one copy per patch
    assert sum(per_pass * count for _, per_pass, count in registered) == sent[False]
    assert estimate == pytest.approx(sent[False] * forward, rel=1e-6)
    assert estimates.estimate_seconds(model, images, "occlusion", **params) == 0  # cached maps cost nothing
    assert backward > 0


def test_a_pass_is_timed_between_traces_as_a_trace_beside_it_would_double_it():
    from explainers.runtime import passes

    seen, traced, release = [], threading.Event(), threading.Event()

    def warm_up_tracing():
        with passes._TRACES.tracing():
            traced.set()
            release.wait(10)

    tracer = threading.Thread(target=warm_up_tracing)
    tracer.start()
    traced.wait(10)
    threading.Timer(0.3, release.set).start()
    passes._seconds_between_traces(lambda: seen.append(release.is_set()))
    assert seen == [True]  # timed once the trace under way had ended

    def a_trace_starts_meanwhile():
        seen.append("run")
        if len(seen) == 2:
            with passes._TRACES.tracing():
                pass

    passes._seconds_between_traces(a_trace_starts_meanwhile)
    assert seen == [True, "run", "run"]  # that timing met a trace: timed again
    tracer.join()


def test_a_comparison_estimate_counts_the_scores_of_maps_until_they_are_cached(embedded_model, sample):
    images = [sample("coffee"), sample("rocket")]
    methods = {"saliency": (None, {}), "gradcam": (None, {})}
    ex.RESULTS.clear()
    _, forward = embedded_model.runtime.pass_seconds()
    curves = 2 * len(images) * 2 * (32 + 1) * forward  # two methods, each image's 2 x (steps + 1) inputs
    assert estimates.comparison_seconds(embedded_model, images, methods, steps=32) == pytest.approx(
        sum(estimates.estimate_seconds(embedded_model, images, name) for name in methods) + curves)
    maps = {name: ex.attribute(embedded_model, images, name) for name in methods}
    assert estimates.comparison_seconds(embedded_model, images, methods, steps=32) == pytest.approx(curves)
    for attribution in maps.values():
        ex.scores.deletion_insertion(embedded_model, images, attribution, steps=32)
    assert estimates.comparison_seconds(embedded_model, images, methods, steps=32) == 0
    assert estimates.comparison_seconds(embedded_model, images, methods, steps=8) == pytest.approx(curves * 9 / 33)


def test_a_stop_condition_ends_a_long_method_between_batches_and_caches_nothing(embedded_model, sample):
    images = [sample("coffee")]
    asked = []

    def after_three_batches() -> bool:
        asked.append(True)
        return len(asked) > 3

    before = embedded_model.runtime.passes_run
    with stopping.stop_when(after_three_batches), pytest.raises(stopping.Stopped):
        ex.attribute(embedded_model, images, "occlusion", patch=1, stride=1)  # 3,137 batches of 16 images
    assert embedded_model.runtime.passes_run - before == 3
    assert cached_maps(embedded_model, images, "occlusion", patch=1, stride=1) == 0
    # The condition went with the block: the same model computes on.
    assert ex.attribute(embedded_model, images, "occlusion", patch=112, stride=112).cached == 0


def test_a_stop_condition_ends_a_visualisation_between_steps():
    model = wrap(gap_dense_model(16))
    steps: list[int] = []
    with stopping.stop_when(lambda: len(steps) >= 2), pytest.raises(stopping.Stopped):
        ex.class_visualization(model, [0], lambda done, total: steps.append(done), steps=50)
    assert steps == [1, 2]


def test_the_ceiling_is_the_operators_and_its_refusal_names_the_estimate_and_the_ceiling(monkeypatch):
    monkeypatch.delenv(settings.MAX_REQUEST_SECONDS_ENV, raising=False)
    estimates.check_ceiling(1e9, "Anything")  # unset: no ceiling, as for one local user
    for unusable in ("", "0", "-5", "soon", "inf", "nan"):
        monkeypatch.setenv(settings.MAX_REQUEST_SECONDS_ENV, unusable)
        assert settings.max_request_seconds() is None
    monkeypatch.setenv(settings.MAX_REQUEST_SECONDS_ENV, "120")
    estimates.check_ceiling(119.0, "Computing these maps")
    with pytest.raises(ex.InputError) as refused:
        estimates.check_ceiling(540.0, "Computing these maps")
    assert str(refused.value) == ("Computing these maps would take about 9 min, more than the 2 min this server "
                                  "allows one request, so it is not run.")


@pytest.fixture
def occlusion_runs(monkeypatch) -> list:
    """Every call of Occlusion's method from now on (it still computes)."""
    calls = []
    method = ex.REGISTRY["occlusion"]

    def counted(job, params):
        calls.append(params)
        return method.run(job, params)

    monkeypatch.setitem(ex.REGISTRY, "occlusion", dataclasses.replace(method, run=counted))
    return calls


def _open(params: dict, page: str = "views/compare.py") -> AppTest:
    return open_link(params, page)


def test_a_link_to_a_long_occlusion_shows_its_estimate_and_a_button_and_computes_nothing(occlusion_runs):
    at = _open(LONG_OCCLUSION)
    [notice] = [i.value for i in at.info if "would take" in i.value]
    assert re.fullmatch(r"Computing these maps and their scores would take about \d+ min, so it waits for you to "
                        r"start it\.", notice), notice
    assert re.fullmatch(r"Compute \(about \d+ min\)", at.button(key="cmp_run_estimated").label)
    assert not at.error
    assert not any(m.value.startswith("**Occlusion**  \n") for m in at.markdown)  # no map header
    at.slider(key="cmp_opacity").set_value(0.8).run()  # a rerun that is not the button still waits
    assert at.button(key="cmp_run_estimated") and not at.exception
    assert occlusion_runs == []


def test_the_button_computes_what_it_announced_and_a_display_change_asks_no_more(monkeypatch, occlusion_runs):
    monkeypatch.setattr(budget, "AUTO_RUN_SECONDS", 0.0)  # any request waits: a short one shows the same steps
    at = _open({**LONG_OCCLUSION, "cmp_param_occlusion__patch": "56", "cmp_param_occlusion__stride": "56"})
    assert occlusion_runs == []
    at.button(key="cmp_run_estimated").click().run()
    assert not at.exception, at.exception
    assert len(occlusion_runs) == 1 and any(m.value.startswith("**Occlusion**  \n") for m in at.markdown)
    assert not [b for b in at.button if b.key == "cmp_run_estimated"]
    at.slider(key="cmp_opacity").set_value(0.8).run()
    assert not [b for b in at.button if b.key == "cmp_run_estimated"] and len(occlusion_runs) == 1


@pytest.mark.parametrize("page, prefix, what", [
    ("views/overview.py", "overview", r"Grad-CAM of these 2 images"),
    ("views/layer_grid.py", "grid", r"Computing these 12 maps"),  # 2 images, 2 classes, 3 layers
    ("views/dataset.py", "ds", r"Evaluating the 1,000 images not scored yet"),
])
def test_every_page_that_computes_waits_for_the_button_above_the_threshold(monkeypatch, page, prefix, what):
    monkeypatch.setattr(budget, "AUTO_RUN_SECONDS", 0.0)  # what a long request meets, on requests short enough to run
    ex.RESULTS.clear()
    ex.datasets.PER_FILE.clear()
    at = _open({}, page)
    [notice] = [i.value for i in at.info if "would take" in i.value]
    assert re.fullmatch(rf"{what} would take (under 1 s|about \d+ s), so it waits for you to start it\.", notice), notice
    assert len(ex.RESULTS) == 0 and len(ex.datasets.PER_FILE) == 0  # nothing computed
    shown = len(at.get("image")) + len(at.metric)  # the sidebar's and overview's photos; no maps, no scores
    at.button(key=f"{prefix}_run_estimated").click().run()
    assert not at.exception, at.exception
    assert not [b for b in at.button if b.key == f"{prefix}_run_estimated"]
    assert len(at.get("image")) + len(at.metric) > shown  # the maps (and the dataset's scores) are drawn


def test_a_request_above_the_hosted_ceiling_is_refused_in_one_sentence(monkeypatch, occlusion_runs):
    monkeypatch.setenv(settings.MAX_REQUEST_SECONDS_ENV, "60")
    at = _open(LONG_OCCLUSION)
    [refusal] = [e.value for e in at.error]
    assert re.fullmatch(r"Computing these maps and their scores would take about \d+ min, more than the 60 s this "
                        r"server allows one request, so it is not run\.", refusal), refusal
    assert not [b for b in at.button if b.key == "cmp_run_estimated"]
    assert occlusion_runs == []


def test_the_sanity_check_and_the_visualisations_keep_to_the_same_ceiling(monkeypatch):
    monkeypatch.setenv(settings.MAX_REQUEST_SECONDS_ENV, "1000")
    monkeypatch.setattr(ex.scores.sanity, "estimate_seconds", lambda *args, **kwargs: 5000.0)
    at = _open({"image_names": "coffee", "cmp_methods": "saliency"})
    assert [e.value for e in at.error] == ["The sanity check would take about 83 min, more than the 17 min this "
                                           "server allows one request, so it is not run."]
    assert not [b for b in at.button if b.key == "cmp_sanity_run"]

    monkeypatch.setenv(settings.MAX_REQUEST_SECONDS_ENV, "1")
    at = _open({"image_names": "coffee"}, "views/learned.py")  # the default: coffee's top class, 100 steps
    [refusal] = [e.value for e in at.error]
    assert re.fullmatch(r"Visualising 1 class would take about \d+ s, more than the 1 s this server allows one "
                        r"request, so it is not run\.", refusal), refusal
    assert not [b for b in at.button if b.key == "learned_run"]


def test_the_run_stopped_check_turns_true_when_streamlit_stops_the_run():
    def script():
        import streamlit as st
        from streamlit import runtime
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        from ui import budget

        stopped, seen = budget.run_stopped(), st.session_state.setdefault("seen", [])
        seen.append(stopped())  # running
        runtime.get_instance().is_active_session.return_value = False  # the server no longer counts the session
        seen.append(stopped())
        runtime.get_instance().is_active_session.return_value = True
        seen.append(stopped())
        get_script_run_ctx().script_requests.request_stop()  # what the server does to a closed tab's run
        seen.append(stopped())

    at = AppTest.from_function(script).run()
    assert at.session_state["seen"] == [False, True, False, True]


def test_a_page_whose_tab_closes_midway_ends_its_engine_work_at_the_next_batch():
    def script():
        import streamlit as st
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        import explainers as ex
        from ui import budget

        model = ex.load_model(ex.DIGITS_MODEL)
        image = ex.decode_image(sorted(ex.samples.DIGITS_TEST_FOLDER.rglob("*.png"))[0])
        requests, original = get_script_run_ctx().script_requests, model.runtime.gradients
        batches, st.session_state["runtime"] = st.session_state.setdefault("batches", []), model.runtime

        def closing_the_tab_before_the_third_batch(*args, **kwargs):
            batches.append(len(args[0]))
            if len(batches) == 3:
                requests.request_stop()  # as the server does when the visitor closes the tab
            return original(*args, **kwargs)

        model.runtime.gradients = closing_the_tab_before_the_third_batch
        with budget.stopped_with_the_run():
            ex.attribute(model, [image], "occlusion", patch=1, stride=1)  # 785 inputs, 50 batches
            st.session_state["finished"] = True

    at = AppTest.from_function(script, default_timeout=120).run()
    assert not at.exception, at.exception
    assert at.session_state["batches"] == [1, 16, 16]  # the unoccluded image, then patches until the tab closed
    assert at.session_state["runtime"].passes_run == 2  # the third batch found the run stopped and was not sent
    assert "finished" not in at.session_state
