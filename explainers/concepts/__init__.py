"""What a model relies on across a dataset, for stakeholders who ask "does it use the right evidence, or a shortcut?":
``strategies`` (SpRAy-style clustering of each class's maps into strategies, with where their mass lies), ``tcav``
(concept activation vectors tested against random pseudo-concepts) and ``factorisation`` (concepts found without
examples, by non-negative factorisation of a layer's activations). No Streamlit here; drawing is ``explainers.reports``.
"""

from explainers.concepts.strategies import ClassStrategies, Cluster, Strategies, cluster_class, strategies_of_maps, strategies_of_results  # noqa: F401, I001
from explainers.concepts.tcav import TCAV, ConceptScore, TcavPlan, TcavResult, TcavSettings, plan_tcav, run_tcav, tcav_seconds, tcav_settings  # noqa: F401, I001
from explainers.concepts.factorisation import FACTORISATION, ConceptCrop, DiscoveredConcept, Discovery, FactorisationSettings, discover_concepts, discovery_seconds, factorisation_settings  # noqa: F401, I001
