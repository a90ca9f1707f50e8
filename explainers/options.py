"""Settings of a run that belong to no method and no metric: how a dataset's folders meet the model, its batch size,
and the trust evaluation's sample. Each one ``Param``: the CLI's options, the pages' widgets and links, and the checks
all read them here."""

from __future__ import annotations

from explainers.datasets.mapping import BY_NAME, BY_POSITION, BY_WORDNET_ID
from explainers.methods.registry import Param, ParamSet

AUTO = "auto"  # map_classes's own choice: by name when most folders match a class, else by position
DATASET = ParamSet("dataset", "the dataset", (
    Param("mapping", AUTO, "how class folders meet the model's outputs: by name (or WordNet id) when they match, "
                           "else by position", choices=(AUTO, BY_POSITION, BY_NAME, BY_WORDNET_ID)),
    # Past 256, a pass holds more images than a 2-core machine gains from; below 16 the passes' fixed cost dominates.
    Param("batch_size", 64, "images per model pass", 1, 1024, presets=(16, 32, 64, 128, 256), label="Batch"),
))

# The comparison's deletion and insertion curves: points per curve. Few steps make a coarse curve; each step costs
# a forward pass per map.
CURVE_STEPS = Param("steps", 16, "points of the deletion and insertion curves, each a forward pass per map", 2, 256,
                    presets=(8, 16, 32, 64), label="Deletion / insertion steps")

# The trust evaluation's sample: the page starts on PER_CLASS's default; the CLI takes every image unless told.
PER_CLASS = Param("per_class", 10, "images drawn at random from each class with the seed; a class with fewer gives "
                                   "all it has", 1, 100_000, label="Images per class")
SEED = Param("seed", 0, "draws the sample and the bootstrap resamples: the same seed, the same answer", 0, 2**31 - 1,
             label="Seed")
TRUST_SAMPLE = ParamSet("sample", "the sample", (PER_CLASS, SEED))
