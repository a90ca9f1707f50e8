"""The TCAV chart: each class's concept scores as bars over the spread of their pseudo-concepts' scores, with the
concepts that are not significant marked."""

from __future__ import annotations

from explainers.concepts.tcav import NULL_BAND, TcavResult
from explainers.reports.figures import figure_png, new_figure

# One colour per concept (Paul Tol's "bright", colour-blind aware), taken in the order the concepts were given.
CONCEPT_COLOURS = ("#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB")
NULL_COLOUR = "#999999"


def concepts_png(result: TcavResult) -> bytes:
    """Grouped bars, one group per class and one bar per concept: the TCAV score (mean over runs, with its spread
    over runs as a whisker), over a grey band spanning the pseudo-concepts' central scores (``NULL_BAND``) with a tick
    at their mean. A bar that is not significant is hatched and pale and labelled "n.s."; one whose CAV could not tell
    the concept from random images is labelled "no CAV"."""
    classes = list(dict.fromkeys(item.class_name for item in result.scores))
    concepts = [concept.name for concept in result.concepts]
    width = 0.8 / len(concepts)
    figure, axes = new_figure(max(5.5, 0.45 * len(classes) * len(concepts) + 2.5), 4.0)
    for at, class_name in enumerate(classes):
        for position, concept in enumerate(concepts):
            item = result.score(class_name, concept)
            x = at - 0.4 + width * (position + 0.5)
            colour = CONCEPT_COLOURS[position % len(CONCEPT_COLOURS)]
            axes.bar(x, item.null_score_high - item.null_score_low, width * 0.95, bottom=item.null_score_low,
                     color=NULL_COLOUR, alpha=0.3, linewidth=0, zorder=1,
                     label=f"pseudo-concepts, {NULL_BAND[0]:g}-{NULL_BAND[1]:g}th percentile" if at == position == 0
                     else None)
            axes.hlines(item.null_score_mean, x - width * 0.45, x + width * 0.45, colors=NULL_COLOUR, linewidth=1.5,
                        zorder=2, label="pseudo-concepts' mean" if at == position == 0 else "_nolegend_")
            # The spread over runs as a whisker, kept inside 0..1 where a score lives.
            whisker = [[min(item.score_spread, item.score)], [min(item.score_spread, 1 - item.score)]]
            axes.bar(x, item.score, width * 0.6, color=colour, alpha=1.0 if item.significant else 0.35,
                     hatch=None if item.significant else "//", edgecolor=colour, zorder=3, yerr=whisker,
                     error_kw={"elinewidth": 1, "capsize": 2, "zorder": 4}, label=concept if at == 0 else None)
            verdict = "" if item.significant else "\nn.s." if item.separable else "\nno CAV"
            axes.text(x, min(item.score + item.score_spread, 1.0) + 0.02, f"{item.score:.2f}{verdict}", ha="center",
                      va="bottom", fontsize=7, zorder=5)
    axes.set_xticks(range(len(classes)), classes, rotation=45 if len(classes) > 6 else 0,
                    ha="right" if len(classes) > 6 else "center")
    axes.set_ylim(0, 1.22)
    axes.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    axes.set_ylabel("TCAV score")
    figure.suptitle(f"Concepts at {result.layer}: solid bars are significant (Holm, alpha {result.settings.alpha:g}, "
                   f"{result.tests} tests, {result.pseudo_concepts:,} pseudo-concepts);\nhatched: n.s. = not "
                   "significant, no CAV = the concept could not be told from random images", fontsize=8, x=0.02, ha="left")
    axes.axhline(0.5, color="black", linewidth=0.5, linestyle=":", zorder=0)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return figure_png(figure)
