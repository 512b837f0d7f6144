"""VariationalSoftmax: Variational Classification (Dhuliawala, Sachan & Allen, arXiv 2305.10406).

One layer class; about half of the file is its docstrings (the objective, the reference's
defaults and where keras_vc departs from them), which is why it runs past 400 lines.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_vc import _distribute
from keras_vc import _validation
from keras_vc.layers.gaussian_encoder import GaussianEncoder
from keras_vc.layers.head import ClassifierHead
from keras_vc.ops import gaussian

POSTERIORS = ("gaussian", "deterministic")
PRIORS = ("learned", "fixed")
CLASS_PRIORS = ("uniform", "learned")
PRIOR_LOG_VARIANCE_LIMIT = 5.0
TERM_NAMES = ("kl", "consistency", "discriminator")


@keras.saving.register_keras_serializable(package="keras_vc")
class VariationalSoftmax(ClassifierHead):
    """Variational Classification output layer: a softmax over a Gaussian latent variable.

    Replaces the final ``Dense`` layer of a classifier. The softmax input is a latent variable
    ``z`` with (Dhuliawala, Sachan & Allen, "Variational Classification", TMLR 2024,
    arXiv 2305.10406; code ``shehzaadzd/variational-classification``):

    - an encoder ``q(z | x)``: with ``posterior="gaussian"`` the diagonal Gaussian
      ``N(mean(h), diag exp(log_variance(h)))`` of a :class:`GaussianEncoder` (two linear
      projections of the incoming features ``h``; log-variance softly limited to (-10, 10));
      with ``posterior="deterministic"`` ``z = W h + b`` (or ``z = h`` when ``latent_dim=None``:
      the authors' released code, where z is the backbone's pooled features);
    - class-conditional priors ``p(z | y = k) = N(mu_k, diag sigma_k^2)``: means initialised
      ``N(0, 1)`` as in the reference (``prior_mean_initializer``), log-variances initialised 0
      and softly limited to (-5, 5) by ``5 tanh(raw / 5)`` (the reference leaves them unbounded,
      which lets a variance collapse); learned (``prior="learned"``) or fixed at their
      initial values (``prior="fixed"``);
    - a class prior ``pi``: uniform (the reference) or learned (``softmax`` of K trainable
      logits, initialised uniform).

    The output logits are the log joint densities ``log p(z | k) + log pi_k`` (including the
    ``-D/2 log(2 pi)`` constant, which the reference drops: it changes no probability), so that
    ``softmax(logits) = p(y | z)`` by Bayes' rule and ``logsumexp(logits) = log p(z)``. They are
    computed with matrix products (:func:`keras_vc.ops.gaussian.pairwise_log_density`), in
    float32 whatever the dtype policy; no (batch, K, D) tensor is built.

    **Training** (``training=True``): z is one reparameterised draw from ``q(z | x)`` made with
    the layer's ``keras.random.SeedGenerator`` (stateless, XLA-safe). The objective, computed by
    :class:`keras_vc.losses.VariationalClassificationLoss` from this layer's output, is the
    negative VC ELBO plus the consistency term::

        CE(logits, y) + beta * KL(q(z | x) || p(z | y)) + consistency_weight * T(z, y)

    - ``KL`` is estimated as ``-log p(z | y) - H(q(z | x))``: the cross-entropy part with the
      training draw z (its value is already in the logits, so it costs nothing), the entropy
      in closed form. This is the ELBO's usual one-sample estimate; the closed-form pairwise KL
      (:func:`keras_vc.ops.gaussian.pairwise_kl_divergence`) has the same expectation and a lower
      variance but three more (B, D) x (D, K) products per step. With a deterministic latent,
      whose entropy is a constant, the term is the reference's ``-log p(z | y)``.
    - ``T(z, y) = w_y . z + b_y`` is the reference's per-class linear density-ratio
      discriminator ("Discriminators_1l"). Trained with logistic loss to tell encoder latents
      (label 1) from prior samples ``z~ ~ p(z | y)`` (label 0), its optimum is
      ``log q(z | y) - log p(z | y)``, so ``E_q[T(z, y)]`` estimates ``KL(q(z | y) || p(z | y))``,
      the inconsistency between the empirical class-conditional latent distribution and the
      chosen prior. The encoder minimises it through z.

    **One optimizer.** Stop-gradients separate the two objectives, so that standard ``fit`` with
    one optimizer trains both: the consistency term reaches the encoder only through z (the
    discriminator's weights are held constant in it), and the discriminator's logistic loss
    reaches only the discriminator's weights (latents and prior samples are held constant; prior
    samples pass no gradient to ``mu``, ``sigma``, as in the reference). The reference uses a
    separate AdamW (lr 1e-3) for the discriminator; here it shares the model's optimizer.

    **Prior learning rate** (``prior_learning_rate_multiplier``, ``c``). The reference trains the
    class-conditional priors (``mu_k`` and the log-variances) with a second SGD at a tenth of the
    network's learning rate. A Keras optimizer has one learning rate, so the layer scales the
    prior's *step*: it stores the prior parameters divided by ``c``, uses ``c`` times the stored
    weights, and passes the gradient ``g`` to the stored weights unscaled (a stop-gradient: no
    custom optimizer, the same on every backend). Whatever step ``u(g)`` the optimizer takes,
    the prior moves ``c u(g)``:

    - SGD, with or without (Nesterov) momentum: ``c`` times the step, i.e. the reference's
      separate SGD at ``c`` times the learning rate.
    - Adam, AdamW, RMSprop, Adagrad, Adamax, Nadam, Lion (steps normalised by the gradient's
      statistics): ``c`` times the step. (Scaling the gradient by ``c`` instead would change
      nothing under these, which divide the scale out; a plain reparameterisation
      ``mu = c * raw`` would scale Adam's step by ``c`` but SGD's by ``c^2``.)
    - Lamb and Adafactor scale the step by the stored weight's own size (Adafactor once its RMS
      exceeds ``epsilon_2``), which is ``1/c`` times the prior's: there ``c`` cancels.
    - Decoupled weight decay (``weight_decay=...``) shrinks the prior at the network's relative
      rate, not ``c`` times it (the reference's coupled L2 is scaled with its learning rate);
      gradient clipping sees the unscaled gradient.

    Only ``mu_k`` and the log-variances are affected; the learned class prior, the discriminator
    and the encoder train at the optimizer's rate. The stored weights ``prior_means`` and
    ``prior_raw_log_variances`` keep their names, shapes and order and hold the parameters
    divided by ``c``: read the prior with :meth:`prior_mean_values` and
    :meth:`prior_log_variances`. With ``c = 1`` nothing is scaled (the computation is the same
    as without the argument), so models and weight files saved before it load unchanged; a
    ``.keras`` file carries ``c`` in its config, but a bare weights file loaded into a layer with
    another ``c`` gets its prior scaled by the ratio.

    The default is **1.0**, not the reference's 0.1: the 0.1 belongs to the reference's schedule
    (SGD with momentum, learning rate 0.1, 90 epochs on Tiny-ImageNet), keras_vc's examples and
    benchmark train with Adam for tens of epochs, where a ten-times slower prior has not been
    shown to help, and 1.0 keeps every trained model, saved file and reported figure unchanged.
    Pass ``prior_learning_rate_multiplier=0.1`` for the reference's setting.

    **How labels reach the label-dependent terms.** A Keras layer does not see labels, and the
    objective is not a cross-entropy of the logits alone. In training mode the layer computes
    every label-dependent quantity for *all* K classes as (batch, K) tensors, which costs only
    (D, K) matrix products because the discriminator is linear per class:
    ``kl[i, k] = beta * (-log p(z_i | k) - H(q(z | x_i)))``,
    ``consistency[i, k] = consistency_weight * T(z_i, k)`` and
    ``discriminator[i, k] = softplus(-T(z_i, k)) + softplus(T(z~_ik, k))`` with
    ``z~_ik = mu_k + sigma_k * eps_i``. With ``e = kl + consistency + discriminator`` and
    ``L = log p(z, k)`` the logits of the draw, the per-example objective is an identity::

        CE(L_i, y_i) + e[i, y_i] = CE(L_i - e_i, y_i) + (logsumexp(L_i) - logsumexp(L_i - e_i))

    so in training mode the layer **returns the training logits** ``L - e`` and adds the
    label-independent second part with ``add_loss`` (its batch mean, float32). Any sparse
    categorical cross-entropy from logits on the output, plus the model's losses (which ``fit``
    and ``evaluate`` always add), is then exactly the objective above, values and gradients:
    no tensor travels to the loss outside the model's outputs, so the mechanism is re-entrant
    (tf.distribute replicas, threads) and the same on every backend. Use
    :class:`keras_vc.losses.VariationalClassificationLoss`, which adds label checks;
    ``SparseCategoricalCrossentropy(from_logits=True)`` trains the same objective. Consequences
    to know: training-time metrics (``fit``'s ``accuracy``, not ``val_accuracy``) are computed on
    the training logits; sample and class weights weight ``CE(L_i - e_i, y_i)`` but not the
    label-independent part; in a custom loop, add ``sum(model.losses)`` to the loss (as for any
    regularised Keras model). :meth:`training_terms` returns the (batch, K) terms for analysis.

    **Inference** (``training=False``): z is the mean of ``q(z | x)`` (deterministic; the
    default, ``num_samples=1``). With a Gaussian posterior and ``num_samples = M > 1`` in the
    constructor, the layer averages over M latents ``z_m = mean + sigma * eps_m`` and returns
    ``log((1/M) sum_m p(y | z_m)) + log((1/M) sum_m p(z_m))``: its softmax is the class
    probability averaged over the draws and its logsumexp the averaged latent density (so the OOD
    score keeps its meaning). The ``eps_m`` are **fixed**: drawn once when the layer is built
    (from ``seed``) and stored as the non-trainable weight ``inference_noise``, as
    :class:`VariationalHead` does, so predictions are deterministic, independent of the batch,
    and identical after save / load / export. ``call(inputs, num_samples=M)`` is a fresh
    Monte-Carlo estimate with M new draws from the layer's seed generator (stochastic; what a
    Monte-Carlo serving signature uses). A deterministic posterior has nothing to sample and
    ignores ``num_samples``. Outputs are divided by the non-trainable ``temperature`` (1.0 until
    :func:`keras_vc.calibration.fit_temperature` sets it) in inference mode only (the head
    protocol of :class:`keras_vc.layers.ClassifierHead`): training always sees the model's own
    densities.

    **Distributed training** (``tf.distribute``, e.g. ``MirroredStrategy``). One step on R
    replicas equals the step on one device (tests/test_distribution.py: 2 replicas, float32
    round-off). The training noise (the posterior draw and the discriminator's prior samples) is
    drawn for the *global* batch on every replica, from the generator state all replicas share,
    and each replica keeps its own rows (:func:`keras_vc._distribute.standard_normal_rows`, one
    small collective for the replicas' batch sizes): each example gets the noise it gets on one
    device. (Two replicas drawing their half-batches from the same state would give every half
    the same noise.) The ``add_loss`` term is a mean over the replica's rows, which Keras divides
    by R like the compiled loss, so both sum to global-batch means. It is added after the noise
    draw: a Keras layer's losses live in one list shared by the replicas' threads, which each
    replica's outermost call clears, so a loss added before a collective could be cleared by
    another replica before this one's loss reads it.

    **Mixed precision.** The encoder's and projection's ``Dense`` sublayers compute in the
    policy's dtype; everything after them (prior, class prior, discriminator, the fixed draws,
    the temperature) is a float32 weight read in float32, and the Gaussian math runs in float32.

    **OOD score.** ``recommended_ood_score = "energy"``: ``logsumexp`` of the logits at
    temperature 1, i.e. the log marginal density ``log p(z) = log sum_k pi_k p(z | k)`` of the
    latent. A generative head's density detects far-OOD inputs that land away from every class
    Gaussian, where the softmax can still be confident (such an input is still far nearer one
    class mean than the others). The default ``keras-vc compare`` run measures both on shuffled
    MNIST-1D signals: its OOD table gives this head's AUROC with its own score and with the
    maximum softmax probability side by side.

    Args:
        num_classes: number of classes K (>= 2).
        latent_dim: dimension of z (>= 1), or None for the input feature dimension (with a
            deterministic posterior, z is then the features themselves, as in the reference).
        posterior: ``"gaussian"`` (default) or ``"deterministic"``.
        prior: ``"learned"`` (default) or ``"fixed"`` class-conditional Gaussians.
        class_prior: ``"uniform"`` (default, the reference) or ``"learned"``.
        beta: weight (>= 0) of the KL term (the reference's ``l1 = 0.01``).
        consistency_weight: weight (>= 0) of the discriminator's KL estimate (the reference's
            ``l2 = 0.01``); 0 turns the consistency term off and creates no discriminator.
        num_samples: number (>= 1) of fixed latent draws averaged at inference; 1 (default)
            uses the posterior mean.
        prior_mean_initializer: initializer of the (K, latent_dim) prior means; default
            ``RandomNormal(0, 1)`` (the reference's ``randn``). Means at that scale are about
            ``sqrt(2 latent_dim)`` apart, so the class Gaussians start well separated.
        prior_learning_rate_multiplier: ``c`` > 0, the prior's step relative to the optimizer's
            (see "Prior learning rate" above); 1.0 (default) trains the prior at the network's
            rate, 0.1 is the reference's setting.
        seed: int or None, seed of the layer's ``SeedGenerator``.
        **kwargs: standard layer arguments (``name``, ``dtype``, ...).

    Input shape:
        ``(batch, features)``.

    Output shape:
        ``(batch, num_classes)`` float32 logits.

    Example:

    ```python
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(128, activation="relu"),
        keras_vc.layers.VariationalSoftmax(num_classes=10),
    ])
    model.compile(optimizer="adam", loss=keras_vc.losses.VariationalClassificationLoss(),
                  metrics=["accuracy", keras_vc.metrics.ExpectedCalibrationError()],
                  jit_compile=True)
    model.fit(x_train, y_train, validation_split=0.1, epochs=30)
    logits = model.predict(x_test)                       # log p(z, y) at the posterior mean
    ood = model.layers[-1].ood_score(logits)             # log p(z): higher = in-distribution
    mc = model.layers[-1](features, num_samples=10)      # averaged over 10 fresh draws
    ```
    """

    has_latent = True
    input_rank = 2

    def __init__(self, num_classes, latent_dim=32, posterior="gaussian", prior="learned",
                 class_prior="uniform", beta=0.01, consistency_weight=0.01, num_samples=1,
                 prior_mean_initializer=None, prior_learning_rate_multiplier=1.0, seed=None,
                 **kwargs):
        super().__init__(num_classes, **kwargs)
        if latent_dim is not None:
            latent_dim = _validation.check_int(latent_dim, "latent_dim", minimum=1)
        self.latent_dim = latent_dim
        self.posterior = _validation.check_choice(posterior, "posterior", POSTERIORS)
        self.prior = _validation.check_choice(prior, "prior", PRIORS)
        self.class_prior = _validation.check_choice(class_prior, "class_prior", CLASS_PRIORS)
        self.beta = _validation.check_float(beta, "beta", minimum=0.0)
        self.consistency_weight = _validation.check_float(
            consistency_weight, "consistency_weight", minimum=0.0)
        self.num_samples = _validation.check_int(num_samples, "num_samples", minimum=1)
        if prior_mean_initializer is None:
            prior_mean_initializer = keras.initializers.RandomNormal(mean=0.0, stddev=1.0)
        self.prior_mean_initializer = keras.initializers.get(prior_mean_initializer)
        self.prior_learning_rate_multiplier = _validation.check_float(
            prior_learning_rate_multiplier, "prior_learning_rate_multiplier", minimum=0.0,
            strict_minimum=True)
        if seed is not None:
            seed = _validation.check_int(seed, "seed")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    # ----------------------------------------------------------------------------------------
    # State
    # ----------------------------------------------------------------------------------------

    def build(self, input_shape):
        input_shape = self.check_input_shape(input_shape)
        latent_dim = self.latent_dim or int(input_shape[-1])
        self.encoder = None
        self.projection = None
        if self.posterior == "gaussian":
            self.encoder = GaussianEncoder(latent_dim, variance="learned", seed=self.seed,
                                           dtype=self.dtype_policy, name="encoder")
            self.encoder.build(input_shape)
        elif self.latent_dim is not None:
            self.projection = keras.layers.Dense(latent_dim, dtype=self.dtype_policy,
                                                 name="projection")
            self.projection.build(input_shape)
        trainable_prior = self.prior == "learned"
        # Stored divided by the learning-rate multiplier c (see `_prior_parameter`), so that the
        # initial means are the initializer's whatever c.
        multiplier = self.prior_learning_rate_multiplier
        mean_initializer = self.prior_mean_initializer
        if multiplier != 1.0:
            def mean_initializer(shape, dtype=None):
                return self.prior_mean_initializer(shape, dtype=dtype) / multiplier
        self.prior_means = self.add_float32_weight(
            "prior_means", (self.num_classes, latent_dim), mean_initializer,
            trainable=trainable_prior)
        self.prior_raw_log_variances = self.add_float32_weight(
            "prior_raw_log_variances", (self.num_classes, latent_dim), "zeros",
            trainable=trainable_prior)
        self.class_logits = None
        if self.class_prior == "learned":
            self.class_logits = self.add_float32_weight(
                "class_logits", (self.num_classes,), "zeros")
        self.discriminator_kernel = None
        self.discriminator_bias = None
        if self.consistency_weight > 0:
            # The reference initialises w ~ N(0, 1); on a D-dim latent that gives |T| ~ sqrt(D)
            # at the start. N(0, 1/D) keeps T(z, y) of order one.
            self.discriminator_kernel = self.add_float32_weight(
                "discriminator_kernel", (latent_dim, self.num_classes),
                keras.initializers.VarianceScaling(
                    1.0, mode="fan_in", distribution="untruncated_normal"))
            self.discriminator_bias = self.add_float32_weight(
                "discriminator_bias", (self.num_classes,), "zeros")
        self.inference_noise = None
        if self.encoder is not None and self.num_samples > 1:
            self.inference_noise = self.add_float32_weight(
                "inference_noise", (self.num_samples, latent_dim),
                keras.initializers.RandomNormal(stddev=1.0, seed=self.seed), trainable=False)
        self.build_temperature()
        self.built = True

    # ----------------------------------------------------------------------------------------
    # The model's distributions as tensors
    # ----------------------------------------------------------------------------------------

    def _prior_parameter(self, stored):
        """The prior parameter ``c * stored`` whose gradient ``stored`` receives unscaled.

        The value is ``c`` times the stored weight, but the stop-gradient makes the derivative
        with respect to the stored weight 1: the optimizer sees exactly the gradient ``g`` of
        the parameter, whatever its kind, and the parameter moves ``c`` times the optimizer's
        step ``u(g)``. With ``c = 1`` the stored weight is returned itself.
        """
        multiplier = self.prior_learning_rate_multiplier
        if multiplier == 1.0:
            return stored
        return stored + ops.stop_gradient((multiplier - 1.0) * stored)

    def prior_mean_values(self):
        """(K, latent_dim) means ``mu_k`` of the class-conditional priors (the stored weight
        ``prior_means`` times ``prior_learning_rate_multiplier``)."""
        return self._prior_parameter(self.prior_means)

    def prior_log_variances(self):
        """(K, latent_dim) log-variances of the class-conditional priors, in (-5, 5)."""
        limit = PRIOR_LOG_VARIANCE_LIMIT
        return limit * ops.tanh(self._prior_parameter(self.prior_raw_log_variances) / limit)

    def class_log_prior(self):
        """(K,) log class-prior probabilities ``log pi_k``."""
        if self.class_logits is None:
            return ops.full((self.num_classes,), -math.log(self.num_classes), dtype="float32")
        return ops.log_softmax(self.class_logits)

    def encode(self, inputs):
        """Parameters of ``q(z | x)``: ``(mean, log_variance)`` (float32), ``log_variance`` None
        for a deterministic posterior."""
        if self.encoder is not None:
            return self.encoder(inputs)
        if self.projection is not None:
            return ops.cast(self.projection(inputs), "float32"), None
        return ops.cast(inputs, "float32"), None

    def posterior_distribution(self, inputs):
        """The TFP ``MultivariateNormalDiag`` q(z | x) of features ``inputs`` (batch shape B).

        Raises:
            ValueError: for ``posterior="deterministic"``, which has no Gaussian posterior.
            NotImplementedError: on a backend other than TensorFlow (no TFP there); the closed
                forms of :mod:`keras_vc.ops.gaussian` replace it.
        """
        if self.encoder is None:
            raise ValueError("`posterior_distribution` needs posterior='gaussian'; this layer's "
                             "posterior is deterministic (use `encode`).")
        mean, log_variance = self.encode(inputs)
        return gaussian.multivariate_normal_diag(mean, log_variance, name="posterior")

    def prior_distribution(self):
        """The K class-conditional priors p(z | y) as one TFP ``MultivariateNormalDiag`` with
        batch shape (K,).

        Raises:
            NotImplementedError: on a backend other than TensorFlow (no TFP there); use
                ``prior_means`` and ``prior_log_variances()`` with :mod:`keras_vc.ops.gaussian`.
        """
        return gaussian.multivariate_normal_diag(
            self.prior_mean_values(), self.prior_log_variances(), name="prior")

    def joint_log_density(self, z):
        """``log p(z | k) + log pi_k`` for latents z (B, latent_dim): (B, K) float32."""
        return (gaussian.pairwise_log_density(z, self.prior_mean_values(),
                                              self.prior_log_variances())
                + self.class_log_prior()[None, :])

    # ----------------------------------------------------------------------------------------
    # Forward pass
    # ----------------------------------------------------------------------------------------

    def call(self, inputs, training=None, num_samples=None):
        if num_samples is not None:
            num_samples = _validation.check_int(num_samples, "num_samples", minimum=1)
        mean, log_variance = self.encode(inputs)
        if training:
            logits, terms = self._training_outputs(mean, log_variance)
            extra = sum(term for term in terms.values() if term is not None)
            training_logits = logits - extra
            # The label-independent part of the objective (see the class docstring), added after
            # the noise draw: see "Distributed training" there.
            self.add_loss(ops.mean(ops.logsumexp(logits, axis=-1)
                                   - ops.logsumexp(training_logits, axis=-1)))
            return self.finalize_logits(training_logits, training)
        if log_variance is None:
            logits = self.joint_log_density(mean)
        elif num_samples is not None:  # fresh draws
            logits = self._monte_carlo_logits(gaussian.sample(
                mean, log_variance, self.seed_generator, num_samples=num_samples))
        elif self.inference_noise is None:
            logits = self.joint_log_density(mean)
        else:  # the fixed draws, (M, 1, Z) noise against (1, B, Z) parameters
            logits = self._monte_carlo_logits(gaussian.reparameterize(
                ops.expand_dims(mean, 0), ops.expand_dims(log_variance, 0),
                ops.expand_dims(self.inference_noise, 1)))
        return self.finalize_logits(logits, training)

    def training_terms(self, inputs):
        """One training draw's logits and label-dependent terms, for analysis and tests.

        Args:
            inputs: features (B, features) entering this layer.

        Returns:
            ``(logits, terms)``: the (B, K) log joint densities ``log p(z, k)`` of one posterior
            draw, and a dict with the (B, K) float32 tensors ``"kl"``, ``"consistency"`` and
            ``"discriminator"`` (None where the layer has no such term; see the class docstring).
            The training output of the layer is ``logits - sum(terms)``.
        """
        if not self.built:
            self.build(tuple(ops.shape(inputs)))
        return self._training_outputs(*self.encode(inputs))

    def _monte_carlo_logits(self, draws):
        """Logits of the draws' averaged probabilities and density; ``draws``: (M, B, Z)."""
        num_samples, batch = int(draws.shape[0]), ops.shape(draws)[1]
        flat = ops.reshape(draws, (-1, ops.shape(draws)[-1]))
        joint = ops.reshape(self.joint_log_density(flat), (num_samples, batch, self.num_classes))
        log_marginal = ops.logsumexp(joint, axis=-1, keepdims=True)   # log p(z_m)
        log_m = math.log(num_samples)
        averaged_posterior = ops.logsumexp(joint - log_marginal, axis=0) - log_m
        averaged_marginal = ops.logsumexp(log_marginal, axis=0) - log_m
        return averaged_posterior + averaged_marginal

    def _training_outputs(self, mean, log_variance):
        """Logits of one posterior draw and the (B, K) label-dependent terms."""
        has_discriminator = self.discriminator_kernel is not None
        # One call to the generator draws the noise of the posterior sample z and, independently,
        # of the discriminator's prior samples (one random op in the compiled step, not two).
        num_noises = int(log_variance is not None) + int(has_discriminator)
        if num_noises:
            # Drawn for the global batch and sliced to this replica's rows under tf.distribute,
            # so that each example's noise does not depend on the number of replicas.
            noise = _distribute.standard_normal_rows((num_noises,) + tuple(ops.shape(mean)),
                                                     self.seed_generator, axis=1)
        z = mean if log_variance is None else gaussian.reparameterize(mean, log_variance, noise[0])
        class_log_prior = self.class_log_prior()
        logits = self.joint_log_density(z)
        # beta * KL(q(z | x) || p(z | k)) = beta * (E_q[-log p(z | k)] - H(q)): the first part
        # estimated with the training draw (it is already in the logits), the entropy in closed
        # form. For a deterministic latent the entropy is a constant and the term is the
        # reference's -log p(z | k).
        divergence = -(logits - class_log_prior[None, :])
        if log_variance is not None:
            divergence = divergence - gaussian.entropy(log_variance)[:, None]
        terms = {"kl": self.beta * divergence, "consistency": None, "discriminator": None}
        if not has_discriminator:
            return logits, terms
        kernel = self.discriminator_kernel
        bias = self.discriminator_bias
        prior_means = ops.stop_gradient(self.prior_mean_values())
        prior_scales = ops.stop_gradient(ops.exp(0.5 * self.prior_log_variances()))
        # Encoder side: T(z, k) with the discriminator held constant.
        encoder_scores = (ops.matmul(z, ops.stop_gradient(kernel))
                          + ops.stop_gradient(bias)[None, :])
        # Discriminator side, on constant latents: real = encoder latents, fake = prior samples
        # z~_ik = mu_k + sigma_k * eps_i, whose scores are affine in eps:
        # T(z~_ik, k) = eps_i . (sigma_k * w_k) + mu_k . w_k + b_k, a (B, D) x (D, K) product.
        real_scores = ops.matmul(ops.stop_gradient(z), kernel) + bias[None, :]
        eps = noise[num_noises - 1]
        fake_scores = (ops.matmul(eps, ops.transpose(prior_scales) * kernel)
                       + (ops.sum(ops.transpose(prior_means) * kernel, axis=0) + bias)[None, :])
        terms["consistency"] = self.consistency_weight * encoder_scores
        # Logistic loss: -log sigmoid(T_real) - log(1 - sigmoid(T_fake)).
        terms["discriminator"] = ops.softplus(-real_scores) + ops.softplus(fake_scores)
        return logits, terms

    # ----------------------------------------------------------------------------------------
    # Diagnostics, OOD score, config
    # ----------------------------------------------------------------------------------------

    def consistency_kl(self, inputs, labels):
        """The discriminator's estimate of ``KL(q(z | y) || p(z | y))``: the mean of
        ``T(z_i, y_i)`` over the batch, z drawn from q(z | x_i).

        Args:
            inputs: features (B, features) entering this layer.
            labels: integer class ids (B,) (or one-hot rows).

        Returns:
            A float: the estimate in nats.

        Raises:
            ValueError: without a discriminator (``consistency_weight=0``) or for bad labels.
        """
        if self.discriminator_kernel is None:
            raise ValueError("`consistency_kl` needs a discriminator: this layer was built with "
                             "consistency_weight=0.")
        inputs = ops.convert_to_tensor(inputs)
        labels = _validation.check_labels(labels, self.num_classes,
                                          num_samples=int(inputs.shape[0]))
        mean, log_variance = self.encode(inputs)
        z = mean if log_variance is None else gaussian.sample(mean, log_variance,
                                                              self.seed_generator)
        scores_ = ops.matmul(z, self.discriminator_kernel) + self.discriminator_bias[None, :]
        scores_ = ops.convert_to_numpy(scores_)
        return float(np.mean(scores_[np.arange(labels.size), labels]))

    @property
    def recommended_ood_score(self):
        """``"energy"``: ``logsumexp`` of the logits at temperature 1 = the log marginal density
        ``log p(z)`` (of the averaged density for Monte Carlo outputs)."""
        return "energy"

    def get_config(self):
        config = super().get_config()
        config.update({
            "latent_dim": self.latent_dim,
            "posterior": self.posterior,
            "prior": self.prior,
            "class_prior": self.class_prior,
            "beta": self.beta,
            "consistency_weight": self.consistency_weight,
            "num_samples": self.num_samples,
            "prior_mean_initializer": keras.initializers.serialize(self.prior_mean_initializer),
            "prior_learning_rate_multiplier": self.prior_learning_rate_multiplier,
            "seed": self.seed,
        })
        return config
