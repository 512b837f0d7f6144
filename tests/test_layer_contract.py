"""Every public layer passes the shared layer contract (tests/layer_contract.py)."""

import keras
import pytest

from keras_vc.layers import BottleneckHead
from keras_vc.layers import ClassifierHead
from keras_vc.layers import DistanceLogits
from keras_vc.layers import VariationalHead
from keras_vc.layers import VariationalSoftmax
from keras_vc.losses import EntropicCrossEntropy
from keras_vc.losses import VariationalClassificationLoss
from layer_contract import LayerCase
from layer_contract import check_config
from layer_contract import check_layer_contract
from layer_contract import check_mixed_precision

CASES = [
    LayerCase(
        name="dense_softmax_output",
        make_layer=lambda: keras.layers.Dense(3, dtype="float32"),
        input_shape=(5,),
    ),
    LayerCase(
        name="bottleneck_head",
        make_layer=lambda: BottleneckHead(num_classes=3, latent_dim=4),
        input_shape=(5,),
    ),
    LayerCase(
        name="variational_head",
        make_layer=lambda: VariationalHead(num_classes=3, latent_dim=4, num_samples=5, seed=1),
        input_shape=(5,),
    ),
    LayerCase(
        name="distance_logits_dismax",
        make_layer=lambda: DistanceLogits(3, mode="dismax"),
        input_shape=(5,),
        make_loss=EntropicCrossEntropy,
    ),
    LayerCase(
        name="distance_logits_isomax_plus",
        make_layer=lambda: DistanceLogits(3, mode="isomax_plus", entropic_scale=1.0),
        input_shape=(5,),
        make_loss=lambda: EntropicCrossEntropy(entropic_scale=10.0),
    ),
    LayerCase(
        name="variational_softmax_gaussian_latent",
        # Averaged over 3 fixed draws (its stored inference noise must survive save/export).
        make_layer=lambda: VariationalSoftmax(3, latent_dim=4, class_prior="learned",
                                              num_samples=3, seed=0),
        input_shape=(5,),
        make_loss=VariationalClassificationLoss,
    ),
    LayerCase(
        name="variational_softmax_deterministic_latent",
        make_layer=lambda: VariationalSoftmax(3, latent_dim=None, posterior="deterministic",
                                              prior="fixed", consistency_weight=0.0, seed=1),
        input_shape=(5,),
        make_loss=VariationalClassificationLoss,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_layer_contract(case, tmp_path):
    check_layer_contract(case, tmp_path)


class DropsArgumentInConfig(keras.layers.Layer):
    """A broken layer: `scale` changes the output but is missing from get_config."""

    def __init__(self, units, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.scale = scale
        self.dense = keras.layers.Dense(units, dtype=self.dtype_policy)

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, inputs):
        return self.scale * self.dense(inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class HalfPrecisionOutput(keras.layers.Dense):
    """A broken output layer: under mixed precision its logits come out in float16."""


def test_contract_catches_a_dropped_config_argument():
    case = LayerCase("broken_config", lambda: DropsArgumentInConfig(3, scale=5.0), (5,))
    with pytest.raises(AssertionError, match="lacks \\['scale'\\]"):
        check_config(case)


def test_contract_catches_half_precision_logits():
    case = LayerCase("broken_dtype", lambda: HalfPrecisionOutput(3), (5,))
    with pytest.raises(AssertionError, match="expected float32"):
        check_mixed_precision(case)


class HalfPrecisionTemperature(ClassifierHead):
    """A broken head: its temperature is float32 but autocast, so read in float16."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.num_classes))
        self.temperature = self.add_weight(shape=(), initializer="ones", trainable=False,
                                           dtype="float32")

    def call(self, inputs, training=None):
        return self.finalize_logits(keras.ops.matmul(inputs, self.kernel), training)


def test_contract_catches_a_head_weight_read_in_half_precision():
    case = LayerCase("broken_temperature", lambda: HalfPrecisionTemperature(3), (5,))
    with pytest.raises(AssertionError, match="temperature"):
        check_mixed_precision(case)
