"""The pages' own settings that are not a method's or a metric's: each one ``Param``, read by the widget that draws
it and by the link that carries it, so both hold the same bounds."""

from __future__ import annotations

from explainers.learned import OPTIMISATION
from explainers.methods.registry import Param

FEATURE_CHANNELS = Param("channels", 16, "how many of the layer's most active channels to show", 4, 32, 4,
                         label="Channels")
LEARNED_CHANNELS = Param("channels", 6, "how many of the layer's channels most active on the first image to "
                                        "visualise", 1, 12, 1, label="Channels")
LEARNED_PREFIX = "learned_"  # the optimisation's widgets: learned_optimisation__<setting>
LEARNED = OPTIMISATION
