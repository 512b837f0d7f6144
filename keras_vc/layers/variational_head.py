"""The V-TST classification head: a Gaussian latent layer with an N(0, I) prior."""

import math

import keras
from keras import ops

from keras_vc import _distribute
from keras_vc import _validation
from keras_vc.layers.gaussian_encoder import GaussianEncoder
from keras_vc.layers.head import ClassifierHead
from keras_vc.ops import gaussian


@keras.saving.register_keras_serializable(package="keras_vc")
class VariationalHead(ClassifierHead):
    """Variational head of V-TST: a Gaussian latent ``z`` with an ``N(0, I)`` prior, then logits.

    The head of "V-TST" in Jordahn & Olmos, "Decoupling Feature Extraction and Classification
    Layers for Calibrated Neural Networks" (ICML 2024, arXiv 2405.01196; reference code
    ``VTST.py``, ``Two_Stage.py``), usually trained on frozen features with
    :func:`keras_vc.two_stage.retrain_head`::

        q(z | h) = N(mu(h), diag s^2(h))    mu, log s^2: MLPs D -> 3Z -> ReLU -> Z,
                                            log s^2 = log_sigmoid(.) so s^2 lies in (0, 1)
        p(y | z) = softmax(W z + b)
        loss     = CE(W z + b, y) + mean over batch of (1/Z) sum_d KL(q_d || N(0, 1)),
                   z = mu + s * eps (one reparameterised draw per example)

    The KL is averaged over the latent dimensions, as in the reference (an effective weight of
    ``1/Z`` on the summed KL). The encoder is :class:`keras_vc.layers.GaussianEncoder`
    (``hidden_units=3 * latent_dim``, ``variance="bounded"``) and the KL comes from
    :mod:`keras_vc.ops.gaussian`.

    What the layer returns:

    - training (``training=True``): the logits ``W z + b`` of one draw per example; the KL is
      added with ``add_loss`` (float32), so ``compile(loss=SparseCategoricalCrossentropy(
      from_logits=True))`` gives the V-TST loss.
    - inference: the log of the class probabilities averaged over draws,
      ``log (1/M) sum_m softmax(W z_m + b)`` (the reference's ``forward_multisample``); a softmax of
      the output gives the averaged probabilities back. The draws are **fixed**: ``num_samples``
      standard-normal vectors ``eps_m`` drawn once when the layer is built (from ``seed``) and
      stored as the non-trainable weight ``inference_noise``, with ``z_m = mu + s * eps_m`` for
      every example. Inference is therefore deterministic, independent of the batch an example
      is in, identical with and without XLA and after save / load / export (a stateless draw
      with a fixed seed is not: TensorFlow's stateless RNG gives other values under XLA).
      With ``num_samples=1`` the prediction uses the posterior mean ``z = mu``; the reference's
      ``M=1`` evaluation draws one random sample instead.
    - ``call(inputs, num_samples=M)``: a fresh Monte-Carlo estimate with ``M`` new draws from the
      layer's ``SeedGenerator`` (stochastic; what a Monte-Carlo serving signature uses), in
      training or inference.

    The outputs are float32; inference outputs are divided by the non-trainable scalar
    ``temperature`` (1.0 until calibrated, see :func:`keras_vc.calibration.fit_temperature`),
    training outputs never are (the head protocol of :class:`keras_vc.layers.ClassifierHead`);
    the reference has no temperature. The recommended OOD score is the maximum of the averaged probabilities (the
    reference evaluates max-prob), which is what :func:`keras_vc.scores.recommended` gives.

    Args:
        num_classes: number of classes ``K`` (>= 2).
        latent_dim: dimension ``Z`` of the latent variable (>= 1); the reference uses 128 on
            CIFAR-10 and 512 on CIFAR-100.
        num_samples: draws ``M`` averaged at inference (>= 1; 1 uses the posterior mean). The
            reproduction study reports ``M=10``.
        hidden_units: hidden width of the mean and log-variance MLPs; ``None`` means
            ``3 * latent_dim`` as in the reference.
        seed: int or None, seed of the training draws and of the fixed inference draws.
        **kwargs: standard layer arguments (``name``, ``dtype``, ...).

    Input shape:
        ``(batch, D)`` features.

    Output shape:
        ``(batch, num_classes)`` float32 logits.

    Example::

        head = keras_vc.layers.VariationalHead(num_classes=10, latent_dim=128, seed=0)
        model = keras.Sequential([keras.Input((640,)), head])
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(features, labels)            # CE + mean-over-dimensions KL
        probs = keras.ops.softmax(model.predict(features))   # averaged over 10 draws
    """

    has_latent = True

    def __init__(self, num_classes, latent_dim, num_samples=10, hidden_units=None, seed=None,
                 **kwargs):
        super().__init__(num_classes, **kwargs)
        self.latent_dim = _validation.check_int(latent_dim, "latent_dim", minimum=1)
        self.num_samples = _validation.check_int(num_samples, "num_samples", minimum=1)
        if hidden_units is not None:
            hidden_units = _validation.check_int(hidden_units, "hidden_units", minimum=1)
        self.hidden_units = hidden_units
        if seed is not None:
            seed = _validation.check_int(seed, "seed", minimum=0)
        self.seed = seed

    def build(self, input_shape):
        input_shape = self.check_input_shape(input_shape)
        self.encoder = GaussianEncoder(
            self.latent_dim, hidden_units=self.hidden_units or 3 * self.latent_dim,
            variance="bounded", seed=self.seed, dtype=self.dtype_policy, name="encoder")
        self.decoder = keras.layers.Dense(self.num_classes, name="decoder",
                                          dtype=self.dtype_policy)
        self.encoder.build(input_shape)
        self.decoder.build(input_shape[:-1] + (self.latent_dim,))
        self.build_temperature()
        self.inference_noise = None
        if self.num_samples > 1:
            self.inference_noise = self.add_float32_weight(
                "inference_noise", (self.num_samples, self.latent_dim),
                keras.initializers.RandomNormal(stddev=1.0, seed=self.seed), trainable=False)

    def _logits(self, z):
        return ops.cast(self.decoder(z), "float32")

    def _average(self, z):
        """Log of the softmax probabilities averaged over the leading axis of ``z`` (M, ..., Z)."""
        log_probs = ops.log_softmax(self._logits(z), axis=-1)
        count = ops.shape(z)[0]
        return ops.logsumexp(log_probs, axis=0) - math.log(count)

    def call(self, inputs, training=None, num_samples=None):
        mean, log_variance = self.encoder(inputs)
        if num_samples is not None:
            num_samples = _validation.check_int(num_samples, "num_samples", minimum=1)
            outputs = self._average(self.encoder.sample(mean, log_variance, num_samples))
        elif training:
            # The global batch's noise, sliced to this replica's rows under tf.distribute: the
            # same draw for every example on one device or on several replicas.
            noise = _distribute.standard_normal_rows(ops.shape(mean), self.encoder.seed_generator,
                                                     dtype=mean.dtype)
            outputs = self._logits(gaussian.reparameterize(mean, log_variance, noise))
        elif self.inference_noise is None:
            outputs = self._logits(mean)
        else:  # the fixed draws, (M, 1, ..., Z) noise against (1, B, ..., Z) parameters
            noise = ops.reshape(self.inference_noise,
                                (self.num_samples,) + (1,) * (len(mean.shape) - 1)
                                + (self.latent_dim,))
            outputs = self._average(gaussian.reparameterize(
                ops.expand_dims(mean, 0), ops.expand_dims(log_variance, 0), noise))
        if training:
            # Added after the noise draw, whose collective (under tf.distribute) lets the other
            # replicas run: a replica's outermost call clears every layer's losses, so a loss
            # added before a collective could be cleared before this replica's loss reads it.
            kl = ops.mean(gaussian.kl_to_standard_normal(mean, log_variance))
            self.add_loss(ops.cast(kl, "float32"))
        return self.finalize_logits(outputs, training)

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "num_samples": self.num_samples,
                "hidden_units": self.hidden_units, "seed": self.seed}
