"""GaussianEncoder: features -> the mean and log-variance of a diagonal Gaussian q(z | x)."""

import keras
from keras import ops

from keras_vc import _validation
from keras_vc.ops import gaussian

VARIANCES = ("learned", "bounded")
LEARNED_LOG_VARIANCE_LIMIT = 10.0


@keras.saving.register_keras_serializable(package="keras_vc")
class GaussianEncoder(keras.layers.Layer):
    """Encoder head ``q(z | x) = N(mean(h), diag(exp(log_variance(h))))`` of a latent-variable head.

    The shared building block of :class:`keras_vc.layers.VariationalSoftmax` (Variational
    Classification) and the V-TST head of two-stage training. It maps features ``h`` to the
    parameters of a diagonal Gaussian with two separate networks:

    - ``hidden_units=None``: two linear projections ``h -> latent_dim`` (Variational
      Classification), stored as one ``Dense(2 * latent_dim)`` sublayer ``projection`` whose
      first ``latent_dim`` outputs are the mean;
    - ``hidden_units=H``: for each of the mean and the log-variance an MLP
      ``h -> H -> ReLU -> latent_dim`` (V-TST uses ``H = 3 * latent_dim``; Jordahn & Olmos,
      arXiv 2405.01196, ``VTST.py``), the sublayer lists ``mean_network`` and
      ``log_variance_network``.

    The log-variance is parameterised by ``variance``:

    - ``"learned"``: the network's output, softly limited to (-10, 10) by
      ``10 * tanh(raw / 10)`` (almost the identity for |raw| < 5; keeps ``exp`` finite);
    - ``"bounded"``: ``log_sigmoid(raw)``, so the variance lies in (0, 1) and q is never wider
      than a N(0, I) prior (V-TST's ``bound_qzx_var=True``, used in all its reported runs).

    The layer owns a ``keras.random.SeedGenerator``; :meth:`sample` draws reparameterised
    samples with it (stateless, XLA-safe). Mean and log-variance are returned in float32 whatever
    the mixed-precision policy (the Gaussian math downstream needs it).

    Args:
        latent_dim: dimension ``Z`` of the latent variable, >= 1.
        hidden_units: None (linear projections) or the width (>= 1) of the hidden ReLU layer of
            each of the two MLPs.
        variance: ``"learned"`` or ``"bounded"`` (see above).
        kernel_initializer: initializer of every kernel.
        seed: int or None, seed of the layer's ``SeedGenerator``.
        **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Input shape:
        ``(batch, ..., features)``.

    Output shape:
        A tuple ``(mean, log_variance)``, each ``(batch, ..., latent_dim)``, float32.

    Example:
        >>> encoder = GaussianEncoder(8, hidden_units=24, variance="bounded", seed=1)
        >>> mean, log_variance = encoder(features)
        >>> z = encoder.sample(mean, log_variance)                  # (batch, 8)
        >>> z_m = encoder.sample(mean, log_variance, num_samples=10)  # (10, batch, 8)
        >>> q = encoder.distribution(mean, log_variance)            # tfd.MultivariateNormalDiag
    """

    def __init__(self, latent_dim, hidden_units=None, variance="learned",
                 kernel_initializer="glorot_uniform", seed=None, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = _validation.check_int(latent_dim, "latent_dim", minimum=1)
        if hidden_units is not None:
            hidden_units = _validation.check_int(hidden_units, "hidden_units", minimum=1)
        self.hidden_units = hidden_units
        self.variance = _validation.check_choice(variance, "variance", VARIANCES)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        if seed is not None:
            seed = _validation.check_int(seed, "seed")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _dense(self, units, name, activation=None):
        return keras.layers.Dense(units, activation=activation,
                                  kernel_initializer=self.kernel_initializer,
                                  dtype=self.dtype_policy, name=name)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if self.hidden_units is None:
            # Both linear projections as one (features, 2 * latent_dim) kernel: one matrix
            # product and two variables instead of two and four (faster steps, faster XLA
            # compilation); columns [:latent_dim] give the mean, the rest the log-variance.
            self.projection = self._dense(2 * self.latent_dim, "projection")
            self.projection.build(input_shape)
            self.mean_network = self.log_variance_network = None
        else:
            self.projection = None
            self.mean_network = [self._dense(self.hidden_units, "mean_hidden", "relu"),
                                 self._dense(self.latent_dim, "mean")]
            self.log_variance_network = [
                self._dense(self.hidden_units, "log_variance_hidden", "relu"),
                self._dense(self.latent_dim, "log_variance")]
            hidden_shape = input_shape[:-1] + (self.hidden_units,)
            for network in (self.mean_network, self.log_variance_network):
                network[0].build(input_shape)
                network[1].build(hidden_shape)
        self.built = True

    def call(self, inputs):
        if self.projection is not None:
            outputs = ops.cast(self.projection(inputs), "float32")
            mean, raw = outputs[..., :self.latent_dim], outputs[..., self.latent_dim:]
        else:
            mean = ops.cast(self.mean_network[1](self.mean_network[0](inputs)), "float32")
            raw = ops.cast(self.log_variance_network[1](self.log_variance_network[0](inputs)),
                           "float32")
        if self.variance == "bounded":
            log_variance = ops.log_sigmoid(raw)
        else:
            limit = LEARNED_LOG_VARIANCE_LIMIT
            log_variance = limit * ops.tanh(raw / limit)
        return mean, log_variance

    def sample(self, mean, log_variance, num_samples=None):
        """Reparameterised draws from ``N(mean, diag exp(log_variance))`` with the layer's seed.

        Args:
            mean, log_variance: the outputs of :meth:`call`.
            num_samples: None for one draw shaped like ``mean``, or an int >= 1 for
                ``(num_samples,) + mean.shape``.

        Returns:
            Tensor of draws (float32); gradients flow to ``mean`` and ``log_variance``.
        """
        if num_samples is not None:
            num_samples = _validation.check_int(num_samples, "num_samples", minimum=1)
        return gaussian.sample(mean, log_variance, self.seed_generator, num_samples=num_samples)

    def distribution(self, mean, log_variance):
        """The TFP ``MultivariateNormalDiag`` q(z | x) of the given parameters.

        Raises:
            NotImplementedError: on a backend other than TensorFlow (no TFP there); the closed
                forms of :mod:`keras_vc.ops.gaussian` replace it.
        """
        return gaussian.multivariate_normal_diag(mean, log_variance, name="posterior")

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)[:-1] + (self.latent_dim,)
        return shape, shape

    def compute_output_spec(self, inputs):
        shape = tuple(inputs.shape)[:-1] + (self.latent_dim,)
        return (keras.KerasTensor(shape, dtype="float32"),
                keras.KerasTensor(shape, dtype="float32"))

    def get_config(self):
        config = super().get_config()
        config.update({
            "latent_dim": self.latent_dim,
            "hidden_units": self.hidden_units,
            "variance": self.variance,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "seed": self.seed,
        })
        return config
