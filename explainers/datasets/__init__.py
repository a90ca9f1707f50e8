"""A labelled image folder through a model: scan, class mapping, evaluation, results folder, report."""

from explainers.datasets import report  # noqa: F401
from explainers.datasets.evaluate import PER_FILE, Evaluation, Progress, evaluate, evaluate_iter
from explainers.datasets.mapping import BY_NAME, BY_POSITION, BY_WORDNET_ID, ClassMapping, map_classes
from explainers.datasets.results import open_results, write_results
from explainers.datasets.scan import NOT_AN_IMAGE, OUTSIDE_CLASSES, DatasetScan, scan_folder

__all__ = ["BY_NAME", "BY_POSITION", "BY_WORDNET_ID", "NOT_AN_IMAGE", "OUTSIDE_CLASSES", "PER_FILE", "ClassMapping",
           "DatasetScan", "Evaluation", "Progress", "evaluate", "evaluate_iter", "map_classes", "open_results", "report",
           "scan_folder", "write_results"]
