"""A method is one registration: registered from outside the package, it appears in the page, the link and the CLI."""

import numpy as np
import pytest

import explainers as ex
from conftest import PROJECT_ROOT
from explainers import cli
from explainers.inputs.samples import SAMPLES_DIR
from explainers.methods.registry import REGISTRY, Param, markdown_table, register
from helpers import open_link


@pytest.fixture
def brightness():
    """A method only this test knows: the map is the image's brightness to the power ``gamma``."""

    @register("brightness", "Brightness", "this test", params=(
        Param("gamma", 1.0, "exponent of the brightness", 0.5, 3.0, 0.5),
        Param("channel", "mean", "which channel", choices=("mean", "red")),
    ))
    def brightness(job, params):
        light = job.pixels.mean(axis=-1) if params["channel"] == "mean" else job.pixels[..., 0]
        return (light / 255.0) ** params["gamma"], job.top_classes()

    yield "brightness"
    REGISTRY.pop("brightness")


def test_its_parameters_are_checked_and_its_maps_computed(brightness, sample):
    image = sample("coffee")
    result = ex.attribute(ex.load_model(), [image], brightness, gamma=2.0)
    expected = (ex.load_model().resize([image]).mean(axis=-1) / 255.0) ** 2
    np.testing.assert_allclose(result.raw, expected, rtol=1e-5)
    with pytest.raises(ex.InputError, match="The gamma of Brightness must be a number from 0.5 to 3; got 7"):
        ex.attribute(ex.load_model(), [image], brightness, gamma=7)


def test_it_appears_in_the_comparison_page_with_its_widgets_and_in_the_link(brightness):
    at = open_link({"cmp_methods": "brightness", "cmp_param_brightness__gamma": "2.5",
                    "cmp_param_brightness__channel": "red", "image_names": "coffee"}, "views/compare.py")
    assert "Brightness" in at.multiselect(key="cmp_methods").options  # shown by label
    assert at.multiselect(key="cmp_methods").value == ["brightness"]
    assert at.slider(key="cmp_param_brightness__gamma").value == 2.5
    assert at.radio(key="cmp_param_brightness__channel").value == "red"
    assert any("**Brightness**" in m.value for m in at.markdown)
    at.slider(key="cmp_param_brightness__gamma").set_value(1.5).run()
    assert at.query_params["cmp_param_brightness__gamma"] == "1.5"  # the link follows the widget
    assert at.query_params["cmp_param_brightness__channel"] == "red"


def test_a_link_with_a_bad_parameter_value_falls_back_to_the_default(brightness):
    at = open_link({"cmp_methods": "brightness", "cmp_param_brightness__gamma": "9",
                    "cmp_param_brightness__channel": "green", "image_names": "coffee"}, "views/compare.py")
    assert at.slider(key="cmp_param_brightness__gamma").value == 1.0
    assert at.radio(key="cmp_param_brightness__channel").value == "mean"


def test_it_appears_in_the_cli_with_its_options(brightness, tmp_path, capsys):
    help_text = cli._parser().parse_args(["compare", "--images", ".", "--out", "."]).__dict__
    assert "param__brightness__gamma" in help_text
    images = tmp_path / "images"
    images.mkdir()
    (images / "coffee.png").write_bytes((SAMPLES_DIR / "coffee.png").read_bytes())
    code = cli.main(["compare", "--images", str(images), "--methods", "brightness", "--brightness-gamma", "2",
                     "--brightness-channel", "red", "--steps", "4", "--out", str(tmp_path / "out")])
    assert code == 0
    scores = (tmp_path / "out" / "scores.csv").read_text()
    assert "Brightness" in scores
    assert cli.main(["compare", "--images", str(images), "--methods", "brightness", "--brightness-gamma", "9",
                     "--out", str(tmp_path / "out")]) == cli.EXIT_BAD_INPUT
    assert "The gamma of Brightness must be a number from 0.5 to 3; got 9.0." in capsys.readouterr().err


def test_the_readme_method_table_is_the_registrys():
    assert markdown_table() in (PROJECT_ROOT / "README.md").read_text()
