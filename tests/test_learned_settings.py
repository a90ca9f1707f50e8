"""One description of the visualisation's settings: ``learned.PARAMS``. The settings record, its check, the CLI's
options and the widgets and link keys ``ui.method_params`` makes of them all take their names, defaults and bounds
from it, so they agree: a value beyond a bound is refused everywhere, in the same sentence where there is one."""

import dataclasses

import pytest

import explainers as ex
from explainers import learned
from explainers.cli import EXIT_BAD_INPUT, main
from explainers.errors import InputError

BOUNDED = [p for p in learned.PARAMS if p.low is not None and p.high is not None]


def _beyond(param) -> float | int:
    """The nearest value above ``param``'s high bound that its type can hold."""
    return param.kind(param.high) + (1 if param.kind is int else 0.5)


def _refusal(param, value) -> str:
    return f"The {param.name} of the optimisation must be {param.describe()}; got {value!r}."


@pytest.fixture(scope="module")
def digits():
    return ex.load_model(ex.DIGITS_MODEL)


def test_the_settings_record_is_the_params():
    fields = dataclasses.fields(learned.Settings)
    assert [f.name for f in fields] == [p.name for p in learned.PARAMS]
    assert learned.Settings() == learned.Settings(**{p.name: p.default for p in learned.PARAMS})
    for field, param in zip(fields, learned.PARAMS):
        assert field.type == param.kind.__name__, field.name  # the annotation says what the Param converts to
        if param.choices:
            assert param.default in param.choices, param.name
            continue
        assert param.low <= param.default <= param.high, param.name
        assert all(param.low <= preset <= param.high for preset in param.presets), param.name
    assert learned.OPTIMISATION.params is learned.PARAMS


def test_every_setting_but_the_parameterisation_has_bounds_and_the_steps_are_the_pages():
    by_name = {p.name: p for p in learned.PARAMS}
    assert BOUNDED == [p for p in learned.PARAMS if p.name != "parameterisation"]
    assert by_name["parameterisation"].choices == ("fourier", "maco", "pixel")
    assert by_name["parameterisation"].default == "fourier"
    steps = by_name["steps"]
    assert (steps.low, steps.high, steps.step, steps.default) == (10, 500, 10, 200)


def test_the_cli_takes_the_parameterisation_among_its_choices_only(capsys, tmp_path):
    with pytest.raises(SystemExit) as done:
        main(["visualize", "--model", ex.DIGITS_MODEL, "--classes", "3", "--parameterisation", "lucid",
              "--out", str(tmp_path)])
    assert done.value.code == EXIT_BAD_INPUT
    assert "argument --parameterisation: invalid choice: 'lucid'" in capsys.readouterr().err
    assert main(["visualize", "--model", ex.DIGITS_MODEL, "--classes", "3", "--parameterisation", "maco",
                 "--steps", "10", "--out", str(tmp_path)]) == 0
    digits = ex.load_model(ex.DIGITS_MODEL)  # the option reached the engine: its cache holds this run
    key = learned.visualization_key("class", digits, (3,), learned.settings_for(digits, parameterisation="maco",
                                                                                 steps=10))
    assert learned.VISUALIZATIONS.get(key) is not None


@pytest.mark.parametrize("param", BOUNDED, ids=lambda p: p.name)
def test_a_value_beyond_a_bound_is_refused_in_one_sentence_by_the_settings_and_by_the_cli(param, digits, tmp_path,
                                                                                        capsys):
    high, beyond = param.kind(param.high), _beyond(param)
    assert getattr(learned.Settings(**{param.name: high}), param.name) == high  # the bound itself is allowed
    with pytest.raises(InputError) as refused:
        learned.Settings(**{param.name: beyond})
    assert str(refused.value) == _refusal(param, beyond)
    with pytest.raises(InputError, match=r"^The .* must be .*; got .*\.$"):
        learned.settings_for(digits, **{param.name: param.kind(param.low) - 1})

    out = tmp_path / "never made"
    assert main(["visualize", "--model", ex.DIGITS_MODEL, "--classes", "3", f"--{param.name.replace('_', '-')}",
                 str(beyond), "--out", str(out)]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.splitlines() == [f"error: {_refusal(param, beyond)}"]
    assert not out.exists()  # refused before anything was written or optimised


def test_the_cli_options_are_drawn_from_the_params(capsys):
    with pytest.raises(SystemExit):
        main(["visualize", "--help"])
    usage = " ".join(capsys.readouterr().out.split())  # argparse wraps its help lines
    for param in learned.PARAMS:
        assert f"--{param.name.replace('_', '-')}" in usage
        assert f"{param.help} ({param.describe()}; default {param.default})" in usage, param.name
    with pytest.raises(SystemExit) as done:  # an integer setting takes no fraction: argparse says so
        main(["visualize", "--classes", "3", "--steps", "20.5", "--out", "unused"])
    assert done.value.code == EXIT_BAD_INPUT and "invalid int value: '20.5'" in capsys.readouterr().err


def test_the_model_sets_the_jitter_default_everywhere_it_is_drawn(digits):
    drawn = {p.name: p for p in learned.params_for(digits).params}
    assert drawn["jitter"].default == learned.settings_for(digits).jitter == 0
    # Only the default moves: the bounds, help and every other setting are PARAMS' own.
    assert [dataclasses.replace(p, default=0) for p in learned.PARAMS] == [
        dataclasses.replace(p, default=0) for p in drawn.values()]


def _widget_key(name: str) -> str:
    from ui import param_widgets, view_settings

    return param_widgets.key(learned.OPTIMISATION.name, name, view_settings.LEARNED_PREFIX)


def test_the_page_draws_each_param_and_its_link_clamps_into_the_same_bounds(digits):
    from helpers import open_link

    # A link with every setting beyond its high bound: each widget opens at that bound, as the CLI and the
    # settings refuse anything past it. In pixel space, where every setting applies and so has its widget.
    at = open_link({"model_spec": ex.DIGITS_MODEL, _widget_key("parameterisation"): "pixel",
                    **{_widget_key(p.name): str(_beyond(p)) for p in BOUNDED}}, "views/learned.py")
    assert at.radio(key=_widget_key("parameterisation")).value == "pixel"
    for param in learned.params_for(digits).params:
        if param.choices:
            continue
        high = param.kind(param.high)
        if param.presets:  # a few values to choose from, the link's clamped value among them
            widget = at.select_slider(key=_widget_key(param.name))
            assert set(param.presets) <= {float(o) for o in widget.options} and float(widget.value) == high
        else:
            widget = at.slider(key=_widget_key(param.name)) if param.name != "seed" else at.number_input(
                key=_widget_key(param.name))
            assert (widget.min, widget.max, widget.value) == (param.low, param.high, high), param.name
    assert at.query_params.get(_widget_key("steps")) == "500"  # and the link written back holds the bound


def test_the_page_draws_only_the_settings_that_shape_the_chosen_parameterisation():
    from helpers import open_link

    at = open_link({"model_spec": ex.DIGITS_MODEL}, "views/learned.py")  # the default: Fourier
    drawn = {w.key for w in at.main if getattr(w, "key", None) and w.key.startswith(_widget_key(""))}
    assert drawn == {_widget_key(p.name) for p in learned.PARAMS if p.name not in learned.PIXEL_ONLY}
    at.radio(key=_widget_key("parameterisation")).set_value("pixel").run()
    drawn = {w.key for w in at.main if getattr(w, "key", None) and w.key.startswith(_widget_key(""))}
    assert drawn == {_widget_key(p.name) for p in learned.PARAMS}


def test_the_cli_writes_every_variant_of_each_class(tmp_path, capsys):
    assert main(["visualize", "--model", ex.DIGITS_MODEL, "--classes", "3", "7", "--variants", "2", "--steps", "10",
                 "--out", str(tmp_path)]) == 0
    assert len(list(tmp_path.glob("*.png"))) == 4 + 1  # two pictures of each class and the grid of them all
    assert [line.split(":")[0] for line in capsys.readouterr().out.splitlines()] == ["3 1", "3 2", "7 1", "7 2"]
