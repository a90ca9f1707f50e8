"""Each method has one colour, from its registration, in every chart: pages, report figures and HTML."""

import numpy as np

from explainers.methods.registry import PALETTE, REGISTRY, SHAPES, register
from explainers.reports import comparison
from explainers.reports.figures import MARKERS
from explainers.scores.faithfulness import Curves
from explainers.scores.sanity import SanityCheck


def _lab(colour: str) -> np.ndarray:
    """CIELAB of an sRGB "#RRGGBB" (D65): distances in it follow what the eye tells apart."""
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    f = np.cbrt(np.maximum(xyz / [0.95047, 1.0, 1.08883], 0.008856))
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_every_registered_method_has_a_colour_of_its_own_and_a_registered_shape():
    methods = list(REGISTRY.values())
    assert len(methods) >= 19
    assert len({m.colour for m in methods}) == len(methods)  # no two methods share a colour
    assert len({(m.colour, m.shape) for m in methods}) == len(methods)
    assert {m.shape for m in methods} <= set(SHAPES) and len({m.shape for m in methods}) == len(SHAPES)


def test_methods_whose_colours_are_close_differ_in_shape():
    methods = list(REGISTRY.values())
    for i, a in enumerate(methods):
        for b in methods[i + 1 :]:
            if np.linalg.norm(_lab(a.colour) - _lab(b.colour)) < 35:  # close enough to confuse in a small legend
                assert a.shape != b.shape, (a.name, b.name)


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
        assert REGISTRY["constant"].shape == SHAPES[len(before) % len(SHAPES)]
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


def _curves(names) -> dict:
    fractions = np.linspace(0, 1, 5)
    falling = np.linspace(1, 0, 5)[None]
    return {name: Curves(fractions, falling, falling[:, ::-1]) for name in names}


def test_the_pages_charts_mark_each_method_by_its_registered_colour_and_shape():
    from ui import charts

    names = ["scorecam", "saliency", "rise"]  # registered shapes unlike their places in the chart
    checks = {n: SanityCheck([1, 8], ["a", "b"], np.array([[0.9, 0.8], [0.2, 0.1]]), weighted_layers=8) for n in names}
    for chart in (charts.curves_chart(_curves(names)), charts.sanity_chart(checks)):
        encoding = next(layer["encoding"] for layer in chart.to_dict()["layer"] if "shape" in layer["encoding"])
        assert encoding["color"]["scale"]["range"] == [REGISTRY[n].colour for n in names]
        assert encoding["shape"]["scale"]["range"] == [REGISTRY[n].shape for n in names]
        assert encoding["shape"]["scale"]["domain"] == [REGISTRY[n].label for n in names]


def test_report_figures_mark_each_method_by_its_registered_shape_in_lines_and_legend():
    names = ["scorecam", "saliency"]
    checks = {n: SanityCheck([1, 8], ["a", "b"], np.array([[0.9, 0.8], [0.2, 0.1]]), weighted_layers=8) for n in names}
    for figure, per_method in ((comparison.curves_figure(_curves(names)), 2), (comparison.sanity_figure(checks), 1)):
        axes = figure.axes[0]
        drawn = [line for line in axes.lines if line.get_marker() not in (None, "None", "")]
        assert [line.get_marker() for line in drawn] == [MARKERS[REGISTRY[n].shape] for n in names for _ in
                                                         range(per_method)]
        legend = next(a for a in [axes.get_legend(), *axes.artists] if a is not None and "method" in a.get_title().get_text())
        assert [h.get_marker() for h in legend.legend_handles] == [MARKERS[REGISTRY[n].shape] for n in names]
