"""Which method to trust: metrics that score maps (one registration each, by family) and their evaluation
over a dataset, with intervals, rankings, their stability and the metrics' agreement.

Each family's module registers its metrics on import; a plugin registers more through ``register_metric``.
"""

# The families, in the order pages and reports list their metrics.
# isort: off
from explainers.trust import faithfulness, randomisation, robustness, complexity, localisation  # noqa: F401
# isort: on
from explainers.trust.registry import (  # noqa: E402
    FAMILIES,
    METRICS,
    CostContext,
    MapRequest,
    Metric,
    MetricBatch,
    get_metric,
    markdown_table,
    metric_names,
    register_metric,
)

__all__ = ["FAMILIES", "METRICS", "CostContext", "MapRequest", "Metric", "MetricBatch", "get_metric",
           "markdown_table", "metric_names", "register_metric"]
