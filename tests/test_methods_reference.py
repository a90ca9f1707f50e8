"""On the embedded model, our maps agree with a plain GradientTape reference and with tf-keras-vis."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.stats import spearmanr
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
from tf_keras_vis.layercam import Layercam
from tf_keras_vis.saliency import Saliency
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
from tf_keras_vis.utils.scores import CategoricalScore

import explainers as ex
from explainers.scores.sanity import randomize_top_layers, weighted_layers_from_top
from helpers import pearson

LAYER = "block_9_expand"
NAMES = ["cat_chelsea", "coffee"]


@pytest.fixture(scope="module")
def batch(embedded_model, sample):
    images = [sample(n) for n in NAMES]
    return images, embedded_model.preprocess(images)


def reference_gradcam(model: keras.Model, x: np.ndarray, layer: str, classes: list[int]) -> np.ndarray:
    """Grad-CAM written out by hand: logits from the pooled features, tape, mean gradients."""
    features = keras.Model(model.inputs, [model.get_layer(layer).output, model.get_layer("avg_pool").output])
    kernel, bias = model.get_layer("predictions").get_weights()
    with tf.GradientTape() as tape:
        activations, pooled = features(x)
        logits = tf.matmul(pooled, kernel) + bias
        score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
    grads = tape.gradient(score, activations)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))
    return tf.image.resize(cam[..., None], (224, 224)).numpy()[..., 0]


def test_gradcam_matches_a_plain_gradienttape_reference(embedded_model, batch):
    images, x = batch
    ours = ex.attribute(embedded_model, images, "gradcam", layer=LAYER)
    reference = reference_gradcam(embedded_model.model, x, LAYER, list(ours.classes))
    for a, b in zip(ours.raw, reference):
        assert pearson(a, b) >= 0.99


@pytest.mark.parametrize(
    ("method", "visualizer"), [("gradcam", Gradcam), ("gradcam_plus_plus", GradcamPlusPlus), ("layercam", Layercam)]
)
def test_cam_methods_agree_with_tf_keras_vis(embedded_model, batch, method, visualizer):
    images, x = batch
    ours = ex.attribute(embedded_model, images, method, layer=LAYER)
    theirs = visualizer(embedded_model.model, model_modifier=ReplaceToLinear(), clone=True)(
        CategoricalScore(list(ours.classes)), x, penultimate_layer=LAYER, normalize_cam=False, expand_cam=False
    )
    # Their 14x14 maps, upsampled as we upsample (tf-keras-vis's own corner-aligned zoom
    # shifts the grid by half a cell, which alone costs about 0.05 in correlation).
    upsampled = tf.image.resize(np.asarray(theirs)[..., None], (224, 224)).numpy()[..., 0]
    for a, b in zip(ours.raw, upsampled):
        assert pearson(a, b) >= 0.99


def test_saliency_agrees_with_tf_keras_vis(embedded_model, batch):
    images, x = batch
    ours = ex.attribute(embedded_model, images, "saliency")
    theirs = Saliency(embedded_model.model, model_modifier=ReplaceToLinear(), clone=True)(
        CategoricalScore(list(ours.classes)), x, normalize_map=False
    )
    for a, b in zip(ours.raw, theirs):
        assert pearson(a, b) >= 0.999


@pytest.mark.parametrize("method", ["gradcam", "saliency"])
def test_maps_change_when_the_top_layers_are_reinitialised(embedded_model, batch, method):
    images, _ = batch
    original = ex.attribute(embedded_model, images, method, layer=LAYER if method == "gradcam" else None)
    # The top stage: the head and blocks 11-15 (everything after the last downsampling).
    names = [layer.name for layer in weighted_layers_from_top(embedded_model.model)]
    randomized = randomize_top_layers(embedded_model, count=names.index("block_11_expand") + 1, seed=0)
    assert randomized.fingerprint != embedded_model.fingerprint
    after = ex.attribute(randomized, images, method, targets=list(original.classes),
                         layer=LAYER if method == "gradcam" else None)
    for a, b in zip(original.raw, after.raw):
        assert spearmanr(a.ravel(), b.ravel()).statistic < 0.5


def test_randomizing_leaves_the_original_model_untouched(embedded_model, sample):
    before = embedded_model.predict([sample("coffee")])
    randomize_top_layers(embedded_model, count=3, seed=1)
    np.testing.assert_array_equal(embedded_model.predict([sample("coffee")]), before)


def test_scorecam_with_every_channel_agrees_with_tf_keras_vis(embedded_model, batch):
    from tf_keras_vis.scorecam import Scorecam

    images, x = batch
    layer = "block_5_project"  # 40 channels at 28x28: every channel is affordable in a test
    ours = ex.attribute(embedded_model, images[:1], "scorecam", layer=layer, max_n=0)
    theirs = Scorecam(embedded_model.model, model_modifier=ReplaceToLinear(), clone=True)(
        CategoricalScore(list(ours.classes)), x[:1], penultimate_layer=layer, max_N=-1, expand_cam=False,
        normalize_cam=False,
    )
    upsampled = tf.image.resize(np.asarray(theirs)[..., None], (224, 224)).numpy()[..., 0]
    assert pearson(ours.raw[0], upsampled[0]) >= 0.98
