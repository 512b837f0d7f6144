"""The networks ``keras-vc speed`` puts every head on: a feature input and a small ResNet.

Both return a :class:`Backbone`, the symbolic tensors a head variant attaches to: the inputs, the
features the output layer reads, and the hidden activations a regulariser may read (the soft
nearest neighbour loss on three hidden layers).
"""

import dataclasses

import keras


@dataclasses.dataclass(frozen=True)
class Backbone:
    """Symbolic tensors of a freshly built network, for a head variant to attach to.

    Attributes:
        inputs: the ``keras.Input`` of the network.
        features: the tensor the output layer reads, shape ``(batch, feature_dim)``.
        hidden: hidden activations, first to last (the three stage outputs of the ResNet; empty
            for a bare feature input).
        hidden_names: the names of the layers that output ``hidden``.
    """

    inputs: object
    features: object
    hidden: tuple = ()
    hidden_names: tuple = ()


class FeatureScale(keras.layers.Layer):
    """Multiplies its input by a trainable vector (initialised to ones).

    It stands in front of a head measured alone so that the training step also back-propagates
    into the features, as it does when the head sits on a network (that gradient is a matrix
    product as large as the head's forward pass). Private to the benchmark.

    Input shape: ``(batch, feature_dim)``. Output shape: the same.
    """

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="ones")

    def call(self, inputs):
        return inputs * self.scale

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


def feature_input(feature_dim):
    """A bare feature vector input, to measure a head alone.

    Args:
        feature_dim: length of the feature vector the head reads.

    Returns:
        A :class:`Backbone` whose features are ``FeatureScale()(Input((feature_dim,)))``.
    """
    inputs = keras.Input((feature_dim,), name="features")
    return Backbone(inputs=inputs, features=FeatureScale(name="feature_scale")(inputs))


def _basic_block(x, filters, stride, name):
    shortcut = x
    y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                            name=f"{name}_conv_1")(x)
    y = keras.layers.BatchNormalization(name=f"{name}_bn_1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu_1")(y)
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv_2")(y)
    y = keras.layers.BatchNormalization(name=f"{name}_bn_2")(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                       name=f"{name}_projection")(shortcut)
        shortcut = keras.layers.BatchNormalization(name=f"{name}_projection_bn")(shortcut)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y), f"{name}_out"


def small_resnet(input_shape=(32, 32, 3), widths=(16, 32, 64), blocks_per_stage=1):
    """A CIFAR-style ResNet (He et al. 2016, section 4.2) with one basic block per stage.

    With the defaults it is the depth-8 member of the 6n+2 CIFAR family: a 3x3 convolution stem,
    three stages of basic blocks with 16, 32 and 64 filters (the 2nd and 3rd stages halve the
    resolution), global average pooling. Batch normalisation after every convolution.

    Args:
        input_shape: image shape, channels last.
        widths: filters of each stage; one stage per entry.
        blocks_per_stage: basic blocks in each stage.

    Returns:
        A :class:`Backbone`: ``features`` is the pooled output of the last stage (``widths[-1]``
        values); ``hidden`` holds the output of every stage, ``hidden_names`` their layers.
    """
    inputs = keras.Input(tuple(input_shape), name="images")
    x = keras.layers.Conv2D(widths[0], 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    hidden, hidden_names = [], []
    for stage, filters in enumerate(widths):
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            x, name = _basic_block(x, filters, stride, name=f"stage_{stage + 1}_block_{block + 1}")
        hidden.append(x)
        hidden_names.append(name)
    features = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return Backbone(inputs=inputs, features=features, hidden=tuple(hidden),
                    hidden_names=tuple(hidden_names))
