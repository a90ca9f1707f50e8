"""A labelled image folder through a model, by concern: ``scan`` and ``sources`` (what the folder holds),
``mapping`` (folders to classes), ``scoring`` (images into rows), ``in_process`` (the evaluation run here),
``evaluation`` (its record), ``storage`` (the results folder) and ``analysis`` (what the record says, as numbers).
Drawing it is ``explainers.reports.dataset``; running it on Ray, ``explainers.distributed``."""

from explainers.datasets import analysis
from explainers.datasets.evaluation import Evaluation, Progress
from explainers.datasets.in_process import PER_FILE, evaluate, evaluate_iter
from explainers.datasets.mapping import BY_NAME, BY_POSITION, BY_WORDNET_ID, ClassMapping, map_classes
from explainers.datasets.scan import NOT_AN_IMAGE, OUTSIDE_CLASSES, DatasetScan, scan_folder
from explainers.datasets.scoring import DEFAULT_LAYER
from explainers.datasets.storage import open_results, write_results

__all__ = ["BY_NAME", "BY_POSITION", "BY_WORDNET_ID", "DEFAULT_LAYER", "NOT_AN_IMAGE", "OUTSIDE_CLASSES", "PER_FILE",
           "ClassMapping", "DatasetScan", "Evaluation", "Progress", "analysis", "evaluate", "evaluate_iter",
           "map_classes", "open_results", "scan_folder", "write_results"]
