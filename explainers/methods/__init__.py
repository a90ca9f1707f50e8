"""Attribution methods, one registration each, by family.

Each family's module registers its methods on import; a new method is one
``@register`` (or one weights function for a gradient CAM) in its family's
module, and every page, link, report and CLI option follows from it.
"""

# The families, in the order the pages list their methods.
# isort: off
from explainers.methods import gradients, propagation, cams, perturbation, attention  # noqa: F401
# isort: on
from explainers.methods.cams import combine_cam, gradient_cams, register_gradient_cam  # noqa: E402
from explainers.methods.gradients import BASELINE_PARAMS, baseline_input  # noqa: E402
from explainers.methods.registry import (
    REGISTRY,
    Job,
    Method,
    Param,
    PassGroup,
    get_method,
    markdown_table,
    method_names,
    register,
    resolve_params,
)

__all__ = ["BASELINE_PARAMS", "REGISTRY", "Job", "Method", "Param", "PassGroup", "baseline_input", "combine_cam",
           "get_method", "gradient_cams", "markdown_table", "method_names", "register", "register_gradient_cam", "resolve_params"]
