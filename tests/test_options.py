"""A run's own settings (dataset options, the trust sample, the comparison's curves) are Params: the command line
refuses what their widgets would not offer, in the same sentence, and a link is clamped to the same bounds."""

import pytest

import explainers as ex
from explainers.cli import EXIT_BAD_INPUT, main
from explainers.options import CURVE_STEPS, DATASET, PER_CLASS, SEED
from helpers import open_link

MAPPING, BATCH = DATASET.params


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize(("command", "option", "param", "owner"), [
    (["evaluate", "--data", "{data}"], "--batch-size", BATCH, DATASET.label),
    (["trust", "--data", "{data}"], "--batch-size", BATCH, DATASET.label),
    (["trust", "--data", "{data}"], "--seed", SEED, "the sample"),
    (["compare", "--images", "{data}"], "--steps", CURVE_STEPS, "the curves"),
])
def test_a_value_past_a_bound_is_the_param_s_one_sentence_and_nothing_is_written(
        tmp_path, capsys, command, option, param, owner):
    out = tmp_path / "out"
    argv = [part.format(data=tmp_path) for part in command] + ["--model", ex.DIGITS_MODEL, "--out", str(out)]
    for value in (int(param.low) - 1, int(param.high) + 1):
        assert main([*argv, option, str(value)]) == EXIT_BAD_INPUT
        assert _one_error_line(capsys) == f"error: The {param.name} of {owner} must be {param.describe()}; got {value}."
        assert not out.exists()


def test_a_mapping_the_param_does_not_offer_is_refused_by_its_choices(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--data", str(tmp_path), "--out", str(tmp_path / "out"), "--mapping", "by colour"])
    refusal = capsys.readouterr().err.strip().splitlines()[-1]
    assert "invalid choice: 'by colour'" in refusal and all(f"'{choice}'" in refusal for choice in MAPPING.choices)


def test_a_link_past_the_bounds_opens_the_widgets_at_them():
    at = open_link({"trust_per_class": "0", "trust_seed": str(2**40)}, "views/trust.py")
    assert at.number_input(key="trust_per_class").value == PER_CLASS.low
    assert at.number_input(key="trust_seed").value == SEED.high
    at = open_link({"cmp_methods": "saliency", "cmp_steps": "9999", "cmp_opacity": "7"}, "views/compare.py")
    assert at.session_state["cmp_steps"] == CURVE_STEPS.high  # asked of the estimate, before the curves are drawn
    assert at.slider(key="cmp_opacity").value == 1.0
