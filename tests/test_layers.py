"""Layer discovery: ordered spatial layers, also inside nested (transfer-learning) models."""

import keras
import pytest

import explainers as ex
from explainers.models.layers import find_layer, spread_over_depth
from explainers.models.zoo import ZOO


def small_base() -> keras.Model:
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, name="conv_a")(inputs)
    x = keras.layers.ReLU(name="relu_a")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, name="conv_b")(x)
    return keras.Model(inputs, x, name="base")


def test_layers_of_a_nested_sequential_model_are_listed_under_the_base_name():
    wrapper = keras.Sequential(
        [keras.Input((32, 32, 3)), small_base(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)]
    )
    assert ex.conv_layer_names(wrapper) == ["base/conv_a", "base/relu_a", "base/conv_b"]
    assert find_layer(wrapper, "base/conv_b").name == "conv_b"


def test_layers_of_a_nested_functional_model_keep_graph_order():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(3, 1, name="adapter")(inputs)
    x = small_base()(x)
    x = keras.layers.Conv2D(5, 1, name="after")(x)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    infos = ex.spatial_layers(model)
    assert [i.path for i in infos] == ["adapter", "base/conv_a", "base/relu_a", "base/conv_b", "after"]
    assert (infos[3].height, infos[3].width, infos[3].channels) == (14, 14, 8)


def test_missing_layer_path_is_a_key_error():
    with pytest.raises(KeyError, match="no layer 'base/nope'"):
        find_layer(keras.Sequential([keras.Input((32, 32, 3)), small_base()]), "base/nope")


def test_embedded_model_layers_read_like_the_architecture(embedded_model):
    names = embedded_model.conv_layers
    assert names[0] == "stem_conv"
    assert names.index("block_2_expand") < names.index("block_9_expand") < names.index("head_conv")
    assert "avg_pool" not in names and "predictions" not in names
    assert set(embedded_model.default_layers) <= set(names)


def test_spread_over_depth_picks_first_middle_last_conv(embedded_model):
    picked = spread_over_depth(embedded_model.layers, 3)
    convs = [i.path for i in embedded_model.layers if i.is_conv]
    assert picked == [convs[0], convs[len(convs) // 2], convs[-1]]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_default_layers_exist_in_the_real_architecture(name):
    model = ZOO[name].build(weights=None)
    assert set(ZOO[name].default_layers) <= set(ex.conv_layer_names(model))
    assert model.input_shape[1:3] == ZOO[name].input_size
