"""Hidden-layer entanglement regularisation with the soft nearest neighbor loss (Frosst,
Papernot & Hinton, ICML 2019, arXiv 1902.01889; reference: cleverhans ``SNNLCrossEntropy``).

The paper's composite objective is::

    loss = CE(f(x), y) - alpha * sum_{l in layers} SNNL(h_l(x), y, T_l)

``direction="maximize"`` (this minus sign) *entangles* the classes in the hidden layers, the
paper's regulariser (cleverhans ``factor=-10``, i.e. ``alpha=10``); ``direction="minimize"``
(a plus sign) is the metric-learning use that pulls classes apart.

Design: how the labels reach the regulariser. SNNL needs the labels and the hidden activations of
the same forward pass. ``EntanglementModel`` wraps a functional or Sequential classifier and
overrides Keras 3's ``Model.compute_loss(x, y, y_pred, sample_weight, training)``, the hook
``fit``/``evaluate`` call with the labels on every backend. The wrapper's ``call`` runs one
functional model that returns the named hidden activations next to the logits. In training mode
(``training=True``) it returns both, ``(logits, [hidden_1, ...])``, as its explicit output:
``compute_loss`` reads the activations from ``y_pred`` and ``compute_metrics`` passes only the
logits to the compiled metrics. Nothing travels outside the model's outputs, so the mechanism is
re-entrant (tf.distribute replicas) and the same on every backend. In inference mode it returns
the logits alone; ``evaluate`` recomputes the activations (inference is deterministic, so they
are those of the logits). So:

* training is the standard ``compile`` / ``fit`` on ``(x, y)`` data, ``jit_compile=True``
  included; no labels input, no second data stream;
* ``predict``, ``model.export()`` and serving see ``x -> logits`` only (the activations are
  dead code in the exported graph); ``.keras`` save/load restores the wrapper with its
  classifier and temperatures;
* a custom training loop calls ``model(x, training=True)`` (a tuple) and
  ``model.compute_loss(x, y, y_pred, training=True)``;
* the alternative, a regulariser *layer* taking the labels as a second model input, would need
  ``({"x": x, "labels": y}, y)`` data and a separate serving model without that input.

Temperature (per layer): fixed (``optimize_temperature=False``: ``T_l = temperature``), or, as
in the reference, ``T_l = temperature / t_l`` with a non-trainable inverse temperature ``t_l``
(initial 1) that takes one step *minimising* SNNL inside every training step, after which SNNL
is evaluated at the new ``t_l``. The reference's step is a plain gradient step on ``t_l``, which
is not scale-free (it cycles at squared distances ~1e5 and pins ``t_l`` at its floor on large
activations); here it is a bounded, line-searched Newton step on ``log t_l`` (at most
``temperature_learning_rate * MAX_LOG_STEP`` in log space per training step; see
:func:`keras_vc.losses.optimized_temperature_loss`). ``t_l`` is not a trainable weight: the optimiser of the composite loss would move it
to *maximise* SNNL together with the network. The update happens in ``compute_loss``, whose
non-trainable variable updates Keras 3 keeps on every backend (JAX included).

Distributed training (``tf.distribute``): SNNL compares every pair of rows, so it is a property
of the batch. Under a strategy, ``compute_loss`` gathers the replicas' activations and labels
(``all_gather``, whose gradient returns each replica's rows to it) and computes SNNL, and the
temperature step, on the *global* batch; every replica then holds the same value, divided by the
number of replicas as Keras divides the compiled loss, so that the summed update is the one-device
update (tests/test_distribution.py). Outside a strategy, and on other backends, nothing changes.

Differences from the reference: SNNL itself is computed in log-sum-exp form with the rows that
have no same-class partner left out (see :mod:`keras_vc.losses.soft_nearest_neighbor`); when
maximising, each row is capped smoothly at ``entanglement_cap`` (default ``-log(1e-5)``, the bound
the reference's epsilon imposes; eq. 1 itself is unbounded above and its maximisation diverged in
2 of 3 100-epoch MNIST-1D runs without it); ``t_l`` is kept above ``MIN_INVERSE_TEMPERATURE``;
sample weights weight the cross-entropy only; during
``evaluate`` the term is included in ``val_loss`` (as Keras does for every regulariser) at the
current temperatures, which are not updated.

Example:

```python
inputs = keras.Input((64,))
h0 = keras.layers.Dense(128, activation="relu", name="hidden_0")(inputs)
h1 = keras.layers.Dense(128, activation="relu", name="hidden_1")(h0)
classifier = keras.Model(inputs, keras.layers.Dense(10, name="logits")(h1))

model = keras_vc.models.EntanglementModel(classifier, ["hidden_0", "hidden_1"], alpha=1.0)
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"], jit_compile=True)
model.fit(x_train, y_train, epochs=30, batch_size=64)
model.export("served")  # x -> logits, no labels input
```
"""

import copy

import keras
from keras import ops

from keras_vc import _activations
from keras_vc import _distribute
from keras_vc import _labels
from keras_vc import _validation
from keras_vc.losses import soft_nearest_neighbor as snnl_lib

DIRECTIONS = ("maximize", "minimize")


@keras.saving.register_keras_serializable(package="keras_vc")
class EntanglementModel(keras.Model):
    """A classifier trained with cross-entropy -/+ alpha x soft nearest neighbor loss of hidden
    layers.

    Args:
        classifier: a built functional or Sequential ``keras.Model`` with one input and one
            output, the logits (``from_logits=True`` losses). Layers of Sequential models nested
            in a Sequential classifier can be named too.
        layer_names: the layers whose (flattened) outputs enter SNNL; cleverhans uses every
            layer but the logits.
        alpha: weight of the SNNL sum (>= 0; cleverhans: 10).
        direction: ``"maximize"`` (paper: ``CE - alpha * sum SNNL``, entangle hidden layers) or
            ``"minimize"`` (``CE + alpha * sum SNNL``, metric learning).
        temperature: base temperature ``T0 > 0``, one number for every layer or one per layer
            (cleverhans: 100, suited to squared distances of flattened activations).
        optimize_temperature: update an inverse temperature per layer as in the reference
            (``T = T0 / t``); False keeps ``T = T0``.
        temperature_learning_rate: multiplier of the bounded log-space step of the inverse
            temperature: ``t_l`` moves by at most ``temperature_learning_rate * MAX_LOG_STEP``
            in ``log t_l`` per training step (default 0.01: at most 0.1%). The reference's 0.1
            scales its plain gradient step, which barely moved ``t_l`` at the activation scales
            of our backbones; a fast temperature lets maximisation run away (on MNIST-1D with
            the compare backbone and alpha 1, a rate of 0.1 let the effective temperatures grow
            without settling and test accuracy collapse, where 0.01 trained normally).
        distance: ``"squared_euclidean"`` (reference) or ``"cosine"``.
        entanglement_cap: when maximising, each row of SNNL is capped smoothly at this value
            (``-log(exp(-cap) + exp(-row))``); the default ``-log(1e-5) = 11.51`` is the
            reference's bound. ``None`` maximises eq. 1 unbounded (which can diverge). Not used
            when minimising.
        **kwargs: ``name``, ``trainable`` (as for ``keras.Model``).

    Call arguments:
        inputs: what ``classifier`` takes. ``training``: as usual.

    Returns (call):
        The classifier's logits; with ``training=True`` the tuple ``(logits, hidden)``, where
        ``hidden`` is the list of the named layers' activations (see the module docstring).

    Attributes:
        inverse_temperatures: the per-layer non-trainable variables ``t_l`` (1 until trained);
            :meth:`temperatures` returns the effective ``T0 / t_l``.

    Raises:
        ValueError: a layer name that is not in ``classifier``, ``temperature <= 0``, an unknown
            ``distance`` or ``direction``, ``alpha < 0``; at training time, labels whose shape is
            not (b,), (b, 1) or (b, num_classes).
    """

    def __init__(self, classifier, layer_names, alpha=10.0, direction="maximize",
                 temperature=100.0, optimize_temperature=True, temperature_learning_rate=0.01,
                 distance="squared_euclidean", entanglement_cap=snnl_lib.REFERENCE_CAP,
                 **kwargs):
        super().__init__(**kwargs)
        if not isinstance(classifier, keras.Model):
            raise ValueError(f"`classifier` must be a keras.Model, got {type(classifier).__name__}.")
        self.layer_names = _activations.check_layer_names(layer_names)
        self.alpha = _validation.check_float(alpha, "alpha", minimum=0.0)
        self.direction = _validation.check_choice(direction, "direction", DIRECTIONS)
        if isinstance(temperature, (list, tuple)):
            if len(temperature) != len(self.layer_names):
                raise ValueError(
                    f"`temperature` must be one number or one per layer ({len(self.layer_names)}),"
                    f" got {len(temperature)} values.")
            self.temperature = [float(snnl_lib.check_temperature(t)) for t in temperature]
        else:
            self.temperature = float(snnl_lib.check_temperature(temperature))
        if not isinstance(optimize_temperature, bool):
            raise ValueError(f"`optimize_temperature` must be a bool, got {optimize_temperature!r}.")
        self.optimize_temperature = optimize_temperature
        self.temperature_learning_rate = _validation.check_float(
            temperature_learning_rate, "temperature_learning_rate", minimum=0.0)
        self.distance = snnl_lib.check_distance(distance)
        self.entanglement_cap = snnl_lib.check_cap(entanglement_cap, "entanglement_cap")
        self.classifier = classifier
        self.network = _activations.activation_model(classifier, self.layer_names,
                                                     name=f"{classifier.name}_with_activations")
        # A symbolic call builds the wrapper and records its input signature, so that a model
        # restored by `load_model` exports without being called on data first.
        self(keras.KerasTensor(tuple(classifier.inputs[0].shape),
                               dtype=classifier.inputs[0].dtype))

    def build(self, input_shape):
        if getattr(self, "inverse_temperatures", None) is not None:
            return
        self.inverse_temperatures = [
            self.add_weight(shape=(), initializer="ones", trainable=False, dtype="float32",
                            autocast=False, name=f"inverse_temperature_{i}")
            for i in range(len(self.layer_names))
        ]

    @property
    def _base_temperatures(self):
        if not isinstance(self.temperature, float):
            return list(self.temperature)
        return [self.temperature] * len(self.layer_names)

    def temperatures(self):
        """Effective temperature of each layer, ``{layer_name: T0 / t}`` (Python floats)."""
        return {name: base / float(ops.convert_to_numpy(t))
                for name, base, t in zip(self.layer_names, self._base_temperatures,
                                         self.inverse_temperatures)}

    def call(self, inputs, training=None):
        outputs = self.network(inputs, training=training)
        if training:
            return outputs[-1], list(outputs[:-1])
        return outputs[-1]

    def compute_output_shape(self, input_shape):
        return self.classifier.compute_output_shape(input_shape)

    def compute_output_spec(self, inputs, training=None):
        specs = self.network.compute_output_spec(inputs)
        if training:
            return specs[-1], list(specs[:-1])
        return specs[-1]

    @staticmethod
    def _split(y_pred):
        """``(logits, hidden or None)`` from a training or an inference output."""
        if isinstance(y_pred, (tuple, list)):
            return y_pred[0], list(y_pred[1])
        return y_pred, None

    def entanglement(self, hidden, labels, training=False):
        """Per-layer SNNL of a batch (updating the inverse temperatures when ``training`` and
        ``optimize_temperature``); returns a list of float32 scalars."""
        values = []
        cap = self.entanglement_cap if self.direction == "maximize" else None
        for activations, base, variable in zip(hidden, self._base_temperatures,
                                               self.inverse_temperatures):
            activations = ops.cast(activations, "float32")
            if self.optimize_temperature and training:
                value, updated = snnl_lib.optimized_temperature_loss(
                    activations, labels, base, variable, self.temperature_learning_rate,
                    self.distance, cap=cap)
                variable.assign(ops.cast(updated, variable.dtype))
            else:
                value = snnl_lib.soft_nearest_neighbor_loss(
                    activations, labels, ops.cast(base, "float32") / ops.stop_gradient(variable),
                    self.distance, cap=cap)
            values.append(ops.cast(value, "float32"))
        return values

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        logits, hidden = self._split(y_pred)
        # Labels are checked first, so that a wrong shape gets this message, not the loss's.
        labels = None if y is None else self._labels(y, logits)
        loss = super().compute_loss(x=x, y=y, y_pred=logits, sample_weight=sample_weight,
                                    training=training)
        if labels is None or self.alpha == 0.0:
            return loss
        if hidden is None:  # inference outputs (evaluate): deterministic, so recompute
            hidden = self.network(x, training=False)[:-1]
        # SNNL of the global batch under tf.distribute (identity elsewhere); every replica
        # computes the same value, and the gathered gradient sums over replicas, hence the
        # division (Keras divides the compiled loss the same way).
        hidden = [_distribute.all_gather(activations) for activations in hidden]
        labels = _distribute.all_gather(labels)
        total = ops.sum(ops.stack(self.entanglement(hidden, labels, training)))
        sign = -1.0 if self.direction == "maximize" else 1.0
        return (ops.cast(loss, "float32")
                + sign * self.alpha * total / float(_distribute.num_replicas()))

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, self._split(y_pred)[0], sample_weight=sample_weight)

    def _labels(self, y, y_pred):
        shape = tuple(ops.convert_to_tensor(y).shape)
        num_classes = y_pred.shape[-1] if y_pred is not None else None
        if num_classes is not None:  # (b,), (b, 1) or one-hot (b, K): the package's rule
            _labels.label_layout(shape, num_classes, name="y")
        return snnl_lib.sparse_labels(y, y_pred.shape[0] if y_pred is not None else None,
                                      name="y")

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "classifier": keras.saving.serialize_keras_object(self.classifier),
            "layer_names": list(self.layer_names),
            "alpha": self.alpha,
            "direction": self.direction,
            "temperature": (self.temperature if isinstance(self.temperature, float)
                            else list(self.temperature)),
            "optimize_temperature": self.optimize_temperature,
            "temperature_learning_rate": self.temperature_learning_rate,
            "distance": self.distance,
            "entanglement_cap": self.entanglement_cap,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = copy.deepcopy(config)  # deserialisation consumes the nested dicts
        config["classifier"] = keras.saving.deserialize_keras_object(
            config["classifier"], custom_objects=custom_objects)
        return cls(**config)
