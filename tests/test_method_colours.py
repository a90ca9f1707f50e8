"""Each method has one colour, from its registration, in every chart: pages, report figures and HTML."""

import numpy as np

from explainers.methods.registry import PALETTE, REGISTRY, register
from explainers.reports import comparison
from explainers.scores.faithfulness import Curves


def test_every_method_has_a_palette_colour_and_neighbours_differ():
    colours = [method.colour for method in REGISTRY.values()]
    assert set(colours) <= set(PALETTE)
    for start in range(len(colours) - len(PALETTE) + 1):  # any run of methods as long as the palette: all distinct
        assert len(set(colours[start : start + len(PALETTE)])) == len(PALETTE)


def test_adding_a_method_changes_no_other_colour():
    before = {name: method.colour for name, method in REGISTRY.items()}

    @register("constant", "Constant", "this test")
    def constant(job, params):
        return np.ones(job.x.shape[:3], np.float32), job.top_classes()

    try:
        assert {name: REGISTRY[name].colour for name in before} == before
        assert REGISTRY["constant"].colour == PALETTE[len(before) % len(PALETTE)]
    finally:
        REGISTRY.pop("constant")


def test_report_curves_draw_each_method_in_its_colour_with_one_legend_for_colour_and_one_for_the_curve():
    fractions = np.linspace(0, 1, 5)
    falling = np.linspace(1, 0, 5)[None]
    curves = {name: Curves(fractions, falling * scale, falling[:, ::-1] * scale)
              for name, scale in (("saliency", 1.0), ("gradcam", 0.5))}
    figure = comparison.curves_figure(curves)
    axes = figure.axes[0]
    assert [line.get_color() for line in axes.lines] == [REGISTRY["saliency"].colour] * 2 + [REGISTRY["gradcam"].colour] * 2
    assert [line.get_linestyle() for line in axes.lines] == ["-", "--"] * 2
    kinds = axes.get_legend()
    assert [t.get_text() for t in kinds.get_texts()] == ["deletion", "insertion"]
    assert [h.get_linestyle() for h in kinds.legend_handles] == ["-", "--"]  # told apart by their dash
    (methods,) = [a for a in axes.artists if a is not kinds and hasattr(a, "legend_handles")]
    assert [t.get_text() for t in methods.get_texts()] == ["Saliency", "Grad-CAM"]
    assert [h.get_color() for h in methods.legend_handles] == [REGISTRY["saliency"].colour, REGISTRY["gradcam"].colour]
