"""Training callbacks.

``EntanglementMonitor``: the soft nearest neighbor loss of chosen layers on a fixed held-out batch,
once before training and after every epoch: the "entanglement over training" view of Frosst,
Papernot & Hinton (ICML 2019, arXiv 1902.01889, figures of SNNL per layer over training).
"""

import numpy as np

import keras

from keras_vc import _activations
from keras_vc import _validation
from keras_vc.losses import soft_nearest_neighbor as snnl_lib

OPTIMAL = "optimal"


def _check_labels(y, num_rows):
    """Class ids (n,) from (n,), (n, 1) or one-hot labels; K is not known here, so the range
    check is ``>= 0`` and a one-hot width is taken from the labels themselves."""
    array = _validation.to_numpy(y, "y")
    width = array.shape[1] if array.ndim == 2 else None
    num_classes = width if width and width > 1 else int(np.nanmax(array)) + 1 if array.size else 2
    return _validation.check_labels(array, max(num_classes, 2), num_samples=num_rows, name="y")


class EntanglementMonitor(keras.callbacks.Callback):
    """Records SNNL per chosen layer per epoch on a fixed held-out batch.

    Each value goes into the epoch's ``logs`` as ``snnl/<layer>`` (so it lands in
    ``model.fit(...).history``, in TensorBoard and in CSV logs), and into :attr:`history`, which
    also holds the value before training (epoch 0). :meth:`plot` draws the curves.

    The activations are computed in inference mode on ``x`` (use held-out data: training data
    measures memorisation). With ``temperature="optimal"`` each value is the paper's
    temperature-free ``min_T SNNL`` (see
    :func:`keras_vc.losses.temperature_free_soft_nearest_neighbor_loss`), which makes layers
    and epochs with very different distance scales comparable; a number fixes ``T``.

    Args:
        layer_names: layers of the model being trained (an ``EntanglementModel`` is looked into).
        x: held-out inputs, a fixed batch (a few hundred rows; SNNL costs ``O(n^2 D)``).
        y: their labels, (n,), (n, 1) or one-hot.
        temperature: ``"optimal"`` or a fixed ``T > 0``.
        distance: ``"squared_euclidean"`` or ``"cosine"``.
        batch_size: batch size of the forward passes.

    Attributes:
        epochs: list of epoch numbers recorded (0 = before training).
        history: ``{layer_name: [SNNL per recorded epoch]}``.
        temperatures: ``{layer_name: [T used per recorded epoch]}``.

    Raises:
        ValueError: bad arguments; at the start of training, a layer name that the model lacks.

    Example:

    ```python
    monitor = keras_vc.callbacks.EntanglementMonitor(["hidden_0", "hidden_1"], x_val, y_val)
    history = model.fit(x, y, epochs=30, callbacks=[monitor])
    history.history["snnl/hidden_0"]         # one value per epoch
    monitor.plot().savefig("entanglement.png")
    ```
    """

    def __init__(self, layer_names, x, y, temperature=OPTIMAL, distance="squared_euclidean",
                 batch_size=256):
        super().__init__()
        self.layer_names = _activations.check_layer_names(layer_names)
        if isinstance(x, (list, tuple, dict)):
            raise ValueError("`x` must be a single array (one model input).")
        self.x = _validation.to_numpy(x, "x")
        if self.x.ndim < 1 or self.x.shape[0] < 2:
            raise ValueError(f"`x` must hold at least 2 rows, got shape {self.x.shape}.")
        self.y = _check_labels(y, self.x.shape[0])
        if isinstance(temperature, str):
            if temperature != OPTIMAL:
                raise ValueError(f"`temperature` must be '{OPTIMAL}' or a number > 0, got "
                                 f"{temperature!r}.")
            self.temperature = temperature
        else:
            self.temperature = snnl_lib.check_temperature(temperature)
        self.distance = snnl_lib.check_distance(distance)
        self.batch_size = _validation.check_int(batch_size, "batch_size", minimum=1)
        self.epochs = []
        self.history = {name: [] for name in self.layer_names}
        self.temperatures = {name: [] for name in self.layer_names}
        self._extractor = None

    def measure(self):
        """SNNL of each layer on the monitored batch now: ``{layer_name: (value, T)}``."""
        if self._extractor is None:
            self._extractor = _activations.activation_model(self.model, self.layer_names)
        hidden, _ = _activations.predict_activations(self._extractor, self.x, self.batch_size)
        result = {}
        for name, activations in zip(self.layer_names, hidden):
            activations = activations.astype(np.float32)
            if self.temperature == OPTIMAL:
                result[name] = snnl_lib.temperature_free_soft_nearest_neighbor_loss(
                    activations, self.y, self.distance)
            else:
                value = snnl_lib.soft_nearest_neighbor_loss(activations, self.y, self.temperature,
                                                            self.distance)
                result[name] = (float(keras.ops.convert_to_numpy(value)), self.temperature)
        return result

    def _record(self, epoch):
        values = self.measure()
        self.epochs.append(epoch)
        for name, (value, temperature) in values.items():
            self.history[name].append(value)
            self.temperatures[name].append(temperature)
        return values

    def on_train_begin(self, logs=None):
        self._extractor = None  # the model may differ from a previous fit
        if not self.epochs:
            self._record(0)

    def on_epoch_end(self, epoch, logs=None):
        values = self._record(epoch + 1)
        if logs is not None:
            for name, (value, _) in values.items():
                logs[f"snnl/{name}"] = value

    def plot(self, ax=None, title=None):
        """SNNL per layer against the epoch (0 = before training).

        Args:
            ax: optional matplotlib Axes to draw into.
            title: optional title.

        Returns:
            The matplotlib ``Figure`` (created without pyplot; ``fig.savefig(path)``).
        """
        if ax is None:
            # Imported here, not at the top: `import keras_vc` stays free of matplotlib.
            from matplotlib.figure import Figure

            figure = Figure(figsize=(5.5, 3.8))
            ax = figure.add_subplot(1, 1, 1)
        else:
            figure = ax.figure
        for name in self.layer_names:
            ax.plot(self.epochs, self.history[name], marker="o", markersize=3, label=name)
        ax.set_xlabel("epoch")
        label = "min over T" if self.temperature == OPTIMAL else f"T = {self.temperature:g}"
        ax.set_ylabel(f"soft nearest neighbor loss ({label})")
        ax.grid(alpha=0.3)
        if self.epochs:
            ax.legend(fontsize="small")
        ax.set_title(title or "Entanglement over training (held-out batch)")
        return figure
