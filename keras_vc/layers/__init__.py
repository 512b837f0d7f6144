"""Public Keras layers of keras_vc (one class per module, the module named after the class)."""

from keras_vc.layers.gaussian_encoder import GaussianEncoder
from keras_vc.layers.bottleneck_head import BottleneckHead
from keras_vc.layers.variational_head import VariationalHead
from keras_vc.layers.distance_logits import DistanceLogits
from keras_vc.layers.variational_softmax import VariationalSoftmax
from keras_vc.layers.head import ClassifierHead
from keras_vc.layers.head import output_head
