"""What to explain: which class per image, and how that class is scored from the logits.

Scores are pre-softmax logits. A single-unit sigmoid head is binary: class 1 is
scored by its logit and class 0 by the negated logit, so both classes have an
explanation of their own (not "1 - p", whose gradient is the same map negated).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from explainers.errors import InputError, echo
from explainers.runtime.probe import SIGMOID

TOP1 = -1  # "each image's own top-1 class", resolved inside the forward pass
LEAST = -2  # "each image's least likely class", resolved the same way
# One class for every image or one per image: an index, a class name, or an array of indices (what a pass returns).
Targets = None | int | np.integer | str | Sequence[int | str] | np.ndarray


def resolve_targets(targets: Targets, count: int, class_names: Sequence[str]) -> np.ndarray:
    """``(count,)`` int32 class indices; TOP1 (or None) for each image's top class, LEAST for its least likely."""
    num_classes = max(len(class_names), 2)  # a one-unit binary head still has classes 0 and 1
    if targets is None:
        return np.full(count, TOP1, np.int32)
    per_image = [targets] * count if isinstance(targets, (int, np.integer, str)) else list(targets)
    if len(per_image) != count:
        raise InputError(f"Got {len(per_image)} targets for {count} images; give one per image, or one for all.")
    resolved = []
    for target in per_image:
        if target is None or target in (TOP1, LEAST):
            resolved.append(TOP1 if target is None else int(target))
            continue
        if isinstance(target, str):
            if target not in class_names:
                raise InputError(f"'{echo(target)}' is not one of the model's class names.")
            target = list(class_names).index(target)
        if not 0 <= int(target) < num_classes:
            raise InputError(f"Target class {target} is outside the model's {num_classes} classes (0 to {num_classes - 1}).")
        resolved.append(int(target))
    return np.asarray(resolved, np.int32)


def choose_classes(logits: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """Replace TOP1 entries by each row's predicted class, LEAST entries by its least likely one."""
    if logits.shape[-1] == 1:
        predicted = tf.cast(logits[:, 0] > 0, tf.int32)
        least = 1 - predicted
    else:
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        least = tf.argmin(logits, axis=-1, output_type=tf.int32)  # softmax and sigmoid are monotonic
    return tf.where(targets == TOP1, predicted, tf.where(targets == LEAST, least, targets))


def class_scores(logits: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    """``(N,)`` the score to explain: the class's logit (binary head: +logit or -logit)."""
    if logits.shape[-1] == 1:
        return tf.where(classes == 1, logits[:, 0], -logits[:, 0])
    return tf.gather(logits, classes, axis=1, batch_dims=1)


def probabilities_from_logits(logits: np.ndarray, output_kind: str) -> np.ndarray:
    """``(N, classes)`` probabilities as the model's own output layer gives them; a one-unit head gives ``[1 - p, p]``."""
    logits = np.asarray(logits, np.float64)
    if logits.shape[-1] == 1 or output_kind == SIGMOID:
        probabilities = 1.0 / (1.0 + np.exp(-logits))
    else:
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
    if probabilities.shape[-1] == 1:
        probabilities = np.concatenate([1.0 - probabilities, probabilities], axis=-1)
    return probabilities.astype(np.float32)
