"""Vision Transformers: token-grid CAM layers, attention rollout and gradient-weighted attention, on a small ViT trained
here on pictures whose evidence sits in one known patch (``vit_models``), checked against computations written apart
from the engine (a plain GradientTape, attention recomputed in NumPy from the layers' weights)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from vit_models import PATCH, SIZE, evidence_pictures, small_vit, trained_vit

import explainers as ex
from explainers.methods.attention import gradient_weighted, rollout
from explainers.methods.cams import gradcam_weights, gradient_cams
from explainers.methods.maps import upsample
from explainers.methods.registry import REGISTRY
from explainers.models.transformers import TokenGrid, attention_layers, attention_path
from helpers import wrap

GRID = SIZE // PATCH


@pytest.fixture(scope="module")
def vit() -> ex.LoadedModel:
    return wrap(trained_vit(class_token=True), name="vit")


@pytest.fixture(scope="module")
def pooled_vit() -> ex.LoadedModel:
    return wrap(trained_vit(class_token=False), name="pooled_vit")


@pytest.fixture(scope="module")
def held_out():
    return evidence_pictures(120, seed=7)


@pytest.mark.parametrize("tokens, size, expected", [
    (65, (64, 64), TokenGrid(1, 8, 8)),  # class token + 8 x 8
    (64, (64, 64), TokenGrid(0, 8, 8)),  # pooled tokens, no class token
    (197, (224, 224), TokenGrid(1, 14, 14)),  # ViT-B/16
    (198, (224, 224), TokenGrid(2, 14, 14)),  # DeiT: class + distillation
    (201, (224, 224), TokenGrid(5, 14, 14)),  # class + 4 registers
    (281, (224, 320), TokenGrid(1, 14, 20)),  # a wide picture keeps its aspect ratio
    (3, (64, 64), None),  # too few tokens for a 2 x 2 grid
    (7, (64, 64), TokenGrid(3, 2, 2)),  # the fewest extra tokens win
    (100, (64, 64), TokenGrid(0, 10, 10)),
])
def test_a_token_count_names_its_grid_or_none(tokens, size, expected):
    assert TokenGrid.of(tokens, size) == expected


def test_every_block_is_listed_as_a_layer_on_its_patch_grid_and_the_last_is_the_default(vit):
    blocks = [info for info in vit.layers if info.tokens is not None]
    assert [info.path for info in blocks] == ["block1_norm1", "block2_norm1"]
    assert [info.label for info in blocks] == [f"block {n} (tokens → {GRID}×{GRID}) · block{n}_norm1" for n in (1, 2)]
    assert all(info.tokens == TokenGrid(1, GRID, GRID) for info in blocks)
    assert vit.default_cam_layer == "block2_norm1"  # not the patch embedding, the only 4-D layer
    assert "block2_norm1" in vit.default_layers and "block2_norm1" in vit.conv_layers


def _reference_gradcam(model: keras.Model, x: np.ndarray, classes: np.ndarray, layer: str) -> np.ndarray:
    """Grad-CAM on a block's tokens with a plain GradientTape: the logit from the head's own weights, the class token
    dropped, the rest laid row by row on the grid."""
    head = model.get_layer("head")
    taps = keras.Model(model.inputs[0], [model.get_layer(layer).output, head.input])
    kernel, bias = (w.numpy() for w in head.weights)
    with tf.GradientTape() as tape:
        tokens, pooled = taps(tf.constant(x), training=False)  # the pooled class token is computed from the tokens
        logits = tf.matmul(pooled, kernel) + bias
        score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
    grads = tape.gradient(score, tokens).numpy()[:, 1:].reshape(len(x), GRID, GRID, -1)
    acts = tokens.numpy()[:, 1:].reshape(len(x), GRID, GRID, -1)
    weights = grads.mean(axis=(1, 2))  # (N, D)
    return np.maximum(np.einsum("nhwd,nd->nhw", acts, weights), 0.0)


@pytest.mark.parametrize("layer", ["block1_norm1", "block2_norm1"])
def test_gradcam_on_a_blocks_tokens_equals_a_gradient_tape_reference(vit, held_out, layer):
    x = vit.to_input(held_out.pixels[:12])
    classes = held_out.labels[:12].astype(np.int32)
    engine = gradient_cams(vit.runtime, x, classes, (layer,), gradcam_weights, batch_size=8).maps[0]
    reference = _reference_gradcam(vit.model, x, classes, layer)
    assert engine.shape == (12, GRID, GRID)
    assert reference.max() > 0
    np.testing.assert_allclose(engine, reference, rtol=1e-4, atol=1e-5 * reference.max())


def _attention_in_numpy(model: keras.Model, x: np.ndarray) -> list[np.ndarray]:
    """Each attention layer's scores (N, heads, T, T), recomputed from its query and key weights and its input."""
    found = []
    for path in attention_layers(model):
        layer = model.get_layer(path)
        norm = model.get_layer(path.replace("attention", "norm1"))
        tokens = keras.Model(model.inputs[0], norm.output)(x, training=False).numpy().astype(np.float64)
        (wq, bq), (wk, bk) = ((d.kernel.numpy(), d.bias.numpy()) for d in (layer._query_dense, layer._key_dense))
        query = np.einsum("ntd,dhk->nthk", tokens, wq) + bq
        key = np.einsum("ntd,dhk->nthk", tokens, wk) + bk
        logits = np.einsum("nqhk,nshk->nhqs", query, key) / np.sqrt(wq.shape[-1])
        logits -= logits.max(axis=-1, keepdims=True)
        found.append(np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True))
    return found


def test_the_probe_exposes_attention_scores_equal_to_a_numpy_recomputation(vit, held_out):
    x = vit.to_input(held_out.pixels[:6])
    paths = tuple(attention_path(layer) for layer in attention_layers(vit.model))
    exposed = vit.runtime.forward(x, held_out.labels[:6].astype(np.int32), paths).activations
    for engine, numpy_scores in zip(exposed, _attention_in_numpy(vit.model, x), strict=True):
        assert engine.shape == (6, 2, GRID * GRID + 1, GRID * GRID + 1)
        np.testing.assert_allclose(engine, numpy_scores, atol=2e-5)


def test_attention_rollout_matches_a_numpy_rollout_of_the_recomputed_attention(vit, held_out):
    pixels = held_out.pixels[:6]
    scores = _attention_in_numpy(vit.model, vit.to_input(pixels))
    expected = []
    for image in range(len(pixels)):  # image by image, layer by layer, as the paper writes it
        relevance = np.eye(GRID * GRID + 1)
        for layer_scores in scores:
            mixed = 0.5 * layer_scores[image].mean(axis=0) + 0.5 * np.eye(GRID * GRID + 1)
            relevance = (mixed / mixed.sum(axis=1, keepdims=True)) @ relevance
        expected.append(relevance[0, 1:].reshape(GRID, GRID))
    engine = ex.attribute(vit, list(pixels), "attention_rollout").raw
    np.testing.assert_allclose(engine, upsample(np.array(expected, np.float32), (SIZE, SIZE)), rtol=1e-4, atol=1e-6)


def test_gradient_weighted_attention_is_the_identity_without_positive_gradients():
    scores = [np.full((1, 2, 5, 5), 0.2)]
    relevance = gradient_weighted(scores, [-np.ones((1, 2, 5, 5))])
    np.testing.assert_array_equal(relevance[0], np.eye(5))
    # One layer, uniform attention and gradients of 1: R = I + 0.2 * ones @ I.
    np.testing.assert_allclose(gradient_weighted(scores, [np.ones((1, 2, 5, 5))])[0], np.eye(5) + 0.2)
    np.testing.assert_allclose(rollout(scores)[0].sum(axis=1), 1.0)


def _hit_rate(maps: np.ndarray, evidence: np.ndarray) -> float:
    """Share of maps whose heaviest patch is the evidence patch (chance: 1 in 16)."""
    patches = maps.reshape(len(maps), GRID, PATCH, GRID, PATCH).sum(axis=(2, 4)).reshape(len(maps), -1)
    return float((patches.argmax(axis=1) == evidence).mean())


@pytest.mark.parametrize("method, floor", [("transformer_attribution", 0.8), ("attention_rollout", 0.8),
                                           ("gradcam", 0.25)])
def test_the_attention_methods_find_the_placed_evidence_far_above_chance(vit, held_out, method, floor):
    maps = ex.attribute(vit, list(held_out.pixels), method, targets=held_out.labels).raw
    assert _hit_rate(maps, held_out.evidence) >= floor  # chance is 1/16


def test_a_vit_pooling_its_tokens_reads_every_patch_row(pooled_vit, held_out):
    assert [info.tokens for info in pooled_vit.layers if info.tokens] == [TokenGrid(0, GRID, GRID)] * 2
    maps = ex.attribute(pooled_vit, list(held_out.pixels), "attention_rollout").raw
    assert _hit_rate(maps, held_out.evidence) >= 0.8


def test_every_method_runs_on_the_vit_or_declines_in_one_sentence(vit, held_out):
    pixels = list(held_out.pixels[:2])
    declined = ex.unavailable_methods(vit)
    assert set(declined) == {"cam"}  # no global average pooling before the head: CAM alone cannot run
    for name in REGISTRY:
        if name in declined:
            with pytest.raises(ex.InputError) as refused:
                ex.attribute(vit, pixels, name)
            assert str(refused.value).count(". ") == 0 and str(refused.value).endswith(".")
            continue
        raw = ex.attribute(vit, pixels, name, **({"samples": 4} if name == "smoothgrad" else {})).raw
        assert raw.shape == (2, SIZE, SIZE) and np.isfinite(raw).all(), name


def test_attention_methods_decline_on_a_convolutional_network_in_one_sentence():
    digits = ex.load_model(ex.DIGITS_MODEL)
    declined = ex.unavailable_methods(digits)
    for name in ("attention_rollout", "transformer_attribution"):
        assert declined[name] == ("This method reads a Vision Transformer's attention, and the model has no Keras "
                                  "MultiHeadAttention layer in its graph.")
        with pytest.raises(ex.InputError, match="no Keras MultiHeadAttention"):
            ex.attribute(digits, [np.zeros((28, 28, 3), np.uint8)], name)


def test_a_random_vit_saved_and_loaded_in_safe_mode_keeps_its_blocks(tmp_path):
    small_vit(seed=3).save(tmp_path / "vit.keras")
    loaded = ex.load_model(str(tmp_path / "vit.keras"))
    assert loaded.default_cam_layer == "block2_norm1"
    maps = ex.attribute(loaded, [np.full((SIZE, SIZE, 3), 128, np.uint8)], "transformer_attribution").raw
    assert maps.shape == (1, SIZE, SIZE)
