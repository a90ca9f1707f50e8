"""Scores that say which map to trust: faithfulness curves, the sanity check, agreement between methods."""

from explainers.scores.agreement import agreement, rank_correlation
from explainers.scores.faithfulness import Curves, deletion_insertion
from explainers.scores.sanity import SanityCheck, sanity_check

__all__ = ["Curves", "SanityCheck", "agreement", "deletion_insertion", "rank_correlation", "sanity_check"]
