"""The method comparison as data and pictures, shared by the comparison page, the CLI and reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from explainers.attribution import Attribution
from explainers.methods.registry import REGISTRY
from explainers.reports.render import compose_grid, display_map, overlay, thumbnail
from explainers.scores.faithfulness import Curves


def scores_table(results: Mapping[str, Attribution], curves: Mapping[str, Curves], image_names: Sequence[str],
                 class_names: Sequence[str]) -> pd.DataFrame:
    """One row per image and method: the explained class, deletion and insertion AUCs, and the method's time."""
    rows = []
    for name, result in results.items():
        for i, image in enumerate(image_names):
            rows.append({"image": image, "method": REGISTRY[name].label, "class": class_names[result.classes[i]],
                         "deletion AUC": float(curves[name].deletion_auc[i]),
                         "insertion AUC": float(curves[name].insertion_auc[i]), "seconds": result.seconds})
    return pd.DataFrame(rows)


def method_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean AUCs over images per method, in the order the methods were run."""
    order = list(dict.fromkeys(scores["method"]))
    summary = scores.groupby("method", sort=False)[["deletion AUC", "insertion AUC", "seconds"]].mean()
    return summary.loc[order].reset_index()


def comparison_cell(image: np.ndarray, raw: np.ndarray, height: int | None, clip: float = 99.0,
                    opacity: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """One method's map over one image, at ``height`` pixels tall (None: the image's own size)."""
    if height is not None:
        image = thumbnail(image, height)
    return overlay(image, display_map(raw, image.shape[:2], clip), opacity, colormap)


def comparison_grid(images: Sequence[np.ndarray], row_labels: Sequence[str], results: Mapping[str, Attribution],
                    clip: float = 99.0, opacity: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """Images as rows, the original then one overlay per method as columns, labelled: one shareable picture."""
    rows = [[image] + [comparison_cell(image, results[n].raw[i], None, clip, opacity, colormap) for n in results]
            for i, image in enumerate(images)]
    return compose_grid(rows, list(row_labels), ["image"] + [REGISTRY[n].label for n in results])


def curves_png(curves: Mapping[str, Curves]) -> bytes:
    """Mean deletion (solid) and insertion (dashed) curves per method, as a PNG for reports."""
    from explainers.reports.figures import figure_png, new_figure

    figure, axes = new_figure(7, 4)
    for index, (name, curve) in enumerate(curves.items()):
        color = f"C{index}"
        axes.plot(curve.fractions, curve.deletion.mean(axis=0), color=color, label=f"{REGISTRY[name].label} deletion")
        axes.plot(curve.fractions, curve.insertion.mean(axis=0), color=color, linestyle="--",
                  label=f"{REGISTRY[name].label} insertion")
    axes.set_xlabel("fraction of pixels removed (deletion) or revealed (insertion)")
    axes.set_ylabel("class probability")
    axes.legend(fontsize=7, ncol=2)
    return figure_png(figure)


def report_html(model_name: str, images: Sequence[np.ndarray], row_labels: Sequence[str],
                results: Mapping[str, Attribution], curves: Mapping[str, Curves], scores: pd.DataFrame,
                agreement: np.ndarray | None = None, clip: float = 99.0, opacity: float = 0.5,
                colormap: str = "jet") -> str:
    """The comparison as one offline HTML file: grid, faithfulness scores and curves, agreement, settings."""
    from explainers.reports.html import Section, html_report
    from explainers.reports.render import png_bytes

    labels = [REGISTRY[n].label for n in results]
    settings = pd.DataFrame([{"method": REGISTRY[n].label, "layer": r.layer or "", "parameters": ", ".join(
        f"{k}={v}" for k, v in r.params.items()) or "none", "reference": REGISTRY[n].reference} for n, r in results.items()])
    sections = [
        Section("Maps", png=png_bytes(comparison_grid(images, row_labels, results, clip, opacity, colormap)),
                caption=f"Each row an image and its explained class; maps clipped at the {clip:g}th percentile."),
        Section("Faithfulness", "Deletion: the class probability as the most important pixels are removed (lower is "
                "better). Insertion: as they are revealed on a blurred copy (higher is better). Means over images.",
                table=method_summary(scores), png=curves_png(curves)),
        Section("Scores per image", table=scores),
    ]
    if agreement is not None:
        sections.append(Section("Agreement", "Spearman rank correlation between the methods' maps, mean over images.",
                                table=pd.DataFrame(agreement, columns=labels).assign(method=labels)[["method", *labels]]))
    sections.append(Section("Settings", table=settings))
    return html_report("Attribution method comparison", f"{model_name} · {len(images)} image(s)", sections)
