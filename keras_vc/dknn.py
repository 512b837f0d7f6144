"""Deep k-nearest neighbours (DkNN): Papernot & McDaniel, "Deep k-Nearest Neighbors: Towards
Confident, Interpretable and Robust Deep Learning", arXiv 1803.04765; used as an OOD detector for
SNNL-regularised models by Frosst, Papernot & Hinton (ICML 2019, arXiv 1902.01889). Reference
code: cleverhans ``model_zoo/deep_k_nearest_neighbors/dknn.py``.

Procedure (as in the reference):

1. ``fit``: for each chosen layer, the training activations are flattened, L2-normalised and
   centred by their mean (queries get the same normalisation and the *training* centre).
2. For an input ``x`` and each layer, its ``k`` nearest training points (Euclidean distance on
   those vectors). The nonconformity of a candidate label ``j`` is
   ``alpha_j(x) = sum over layers of |{neighbours whose label != j}|``.
3. ``calibrate``: on held-out data, ``A = {alpha_{y}(x)}`` at the true labels.
4. ``predict``: ``p_j(x) = |{a in A : a >= alpha_j(x)}| / |A|``; prediction ``argmax_j p_j``,
   credibility ``max_j p_j``, confidence ``1 - second largest p_j``.

Credibility is the OOD score: an input far from the training data has neighbours of mixed labels
in the hidden layers, a large nonconformity for every label, and so a low credibility (higher =
more in-distribution, the convention of :mod:`keras_vc.scores`).

Differences from the reference:

* Exact neighbours instead of LSH (FALCONN) or FAISS: queries are processed in batches and the
  training set in chunks, the distance blocks come from :mod:`keras_vc.ops.distances` (matmuls,
  never a (queries, n, D) tensor), and a running top-k is merged chunk by chunk, so memory is
  bounded by ``query_batch_size x train_chunk_size`` whatever the training-set size. Centring
  does not change exact Euclidean neighbours (it is a translation); it is kept because it lowers
  the cancellation error of the matmul form of the distance (the reference centres to help LSH).
* The reference drops the calibration points whose nonconformity is 0
  (``np.trim_zeros(..., 'f')`` on the sorted scores). That shrinks ``|A|`` and inflates every
  p-value above 0, so the p-values are no longer valid conformal p-values. By default every
  calibration point is kept; ``trim_zeros=True`` reproduces the reference.
* Ties in distance are broken by the order of the top-k selection (the reference's index order
  is not specified either).

Example:

```python
dknn = keras_vc.dknn.DeepKNN(model, ["hidden_0", "hidden_1"], k=75)
dknn.fit(x_train, y_train)
dknn.calibrate(x_val, y_val)          # held out; the reference uses 750 points
result = dknn.predict(x_test)
result["prediction"], result["credibility"], result["confidence"], result["p_values"]
```
"""

import numpy as np
from keras import ops

from keras_vc import _activations
from keras_vc import _validation
from keras_vc.ops import distances as distances_lib
from keras_vc.ops.neighbors import k_nearest_neighbors


def _as_input(x, name):
    if isinstance(x, (list, tuple, dict)):
        raise ValueError(f"`{name}` must be a single array (one model input).")
    array = _validation.to_numpy(x, name)
    if array.ndim < 1 or array.shape[0] == 0:
        raise ValueError(f"`{name}` must be a non-empty batch of inputs, got shape {array.shape}.")
    if np.issubdtype(array.dtype, np.number) and not np.all(np.isfinite(array)):
        # A NaN activation has no distance to anything: its "neighbours" would be arbitrary.
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return array


def _check_activations(activations, layer_names, name):
    for layer_name, values in zip(layer_names, activations):
        if not np.all(np.isfinite(values)):
            raise ValueError(
                f"The activations of layer {layer_name!r} on `{name}` contain NaN or infinite "
                "values (finite inputs, so the model itself produced them); their nearest "
                "neighbours would be arbitrary.")


def _normalise(activations, centre=None):
    unit = ops.convert_to_numpy(distances_lib.l2_normalize(activations.astype(np.float32)))
    if centre is None:
        centre = unit.mean(axis=0)
    return (unit - centre).astype(np.float32), centre


class DeepKNN:
    """Deep k-nearest neighbours over chosen layers, with conformal credibility.

    Args:
        model: a trained functional or Sequential classifier (an ``EntanglementModel`` is looked
            into); its layers are read by name.
        layer_names: layers whose activations are indexed (the reference uses every layer,
            logits included).
        k: neighbours per layer (reference default 75); at most the training-set size.
        num_classes: number of classes; default: the width of the model's output.
        batch_size: batch size of forward passes and of neighbour queries.
        chunk_size: training points per distance block (memory ``batch_size x chunk_size``).
        trim_zeros: drop calibration scores equal to 0 as the reference does (see the module
            docstring); default False.

    Raises:
        ValueError: a layer name the model lacks, ``k < 1``, bad sizes; at ``fit``, ``k`` larger
            than the training set; ``calibrate``/``predict`` called out of order.
    """

    def __init__(self, model, layer_names, k=75, num_classes=None, batch_size=256,
                 chunk_size=8192, trim_zeros=False):
        self.layer_names = _activations.check_layer_names(layer_names)
        self.k = _validation.check_int(k, "k", minimum=1)
        self.batch_size = _validation.check_int(batch_size, "batch_size", minimum=1)
        self.chunk_size = _validation.check_int(chunk_size, "chunk_size", minimum=1)
        if not isinstance(trim_zeros, bool):
            raise ValueError(f"`trim_zeros` must be a bool, got {trim_zeros!r}.")
        self.trim_zeros = trim_zeros
        self.model = model
        self._extractor = _activations.activation_model(model, self.layer_names,
                                                        name="dknn_activations")
        if num_classes is None:
            output_shape = tuple(self._extractor.outputs[-1].shape)
            if len(output_shape) != 2 or output_shape[-1] is None or output_shape[-1] < 2:
                raise ValueError("`num_classes` could not be read from the model's output "
                                 f"shape {output_shape}; pass it.")
            num_classes = int(output_shape[-1])
        self.num_classes = _validation.check_int(num_classes, "num_classes", minimum=2)
        self._train = None
        self._calibration = None

    def _activations(self, x, name):
        hidden, _ = _activations.predict_activations(self._extractor, x, self.batch_size)
        _check_activations(hidden, self.layer_names, name)
        return hidden

    def fit(self, x_train, y_train):
        """Indexes the training activations of every chosen layer.

        Args:
            x_train: training inputs (n, ...).
            y_train: their labels, (n,), (n, 1) or one-hot.

        Returns:
            self.
        """
        x_train = _as_input(x_train, "x_train")
        labels = _validation.check_labels(y_train, self.num_classes, x_train.shape[0], "y_train")
        if self.k > labels.shape[0]:
            raise ValueError(f"`k` ({self.k}) is larger than the training set "
                             f"({labels.shape[0]} points).")
        layers = []
        for activations in self._activations(x_train, "x_train"):
            normalised, centre = _normalise(activations)
            layers.append((normalised, centre))
        self._train = (layers, labels)
        self._calibration = None
        return self

    def neighbor_label_counts(self, x):
        """Per layer, how many of the ``k`` neighbours carry each label: (layers, n, K) int."""
        if self._train is None:
            raise ValueError("Call `fit(x_train, y_train)` before using the DkNN.")
        x = _as_input(x, "x")
        layers, labels = self._train
        counts = []
        for (points, centre), activations in zip(layers, self._activations(x, "x")):
            queries, _ = _normalise(activations, centre)
            neighbors = k_nearest_neighbors(queries, points, self.k, self.batch_size,
                                            self.chunk_size)
            neighbor_labels = labels[neighbors]
            layer_counts = np.zeros((x.shape[0], self.num_classes), dtype=np.int64)
            for j in range(self.num_classes):
                layer_counts[:, j] = np.sum(neighbor_labels == j, axis=1)
            counts.append(layer_counts)
        return np.stack(counts)

    def nonconformity(self, x):
        """``alpha_j(x)``: neighbours (over all layers) whose label differs from ``j``; (n, K)."""
        counts = self.neighbor_label_counts(x)
        return len(self.layer_names) * self.k - counts.sum(axis=0)

    def calibrate(self, x_cal, y_cal):
        """Stores the calibration nonconformity scores at the true labels (held-out data).

        Returns:
            self.
        """
        x_cal = _as_input(x_cal, "x_cal")
        labels = _validation.check_labels(y_cal, self.num_classes, x_cal.shape[0], "y_cal")
        scores = self.nonconformity(x_cal)[np.arange(labels.shape[0]), labels]
        scores = np.sort(scores)
        if self.trim_zeros:
            scores = np.trim_zeros(scores, "f")
            if scores.size == 0:
                raise ValueError("Every calibration score is 0; with `trim_zeros=True` nothing is "
                                 "left to calibrate on.")
        self._calibration = scores
        return self

    @property
    def calibration_scores(self):
        """The sorted calibration nonconformity scores (None before ``calibrate``)."""
        return self._calibration

    def p_values(self, x):
        """Conformal p-values ``p_j(x)`` of every label: (n, K) in [0, 1]."""
        if self._calibration is None:
            raise ValueError("Call `calibrate(x_cal, y_cal)` on held-out data before `predict`.")
        alpha = self.nonconformity(x)
        scores = self._calibration
        at_least = scores.size - np.searchsorted(scores, alpha, side="left")
        return at_least / float(scores.size)

    def predict(self, x):
        """DkNN prediction, credibility and confidence.

        Args:
            x: inputs (n, ...).

        Returns:
            A dict of NumPy arrays: ``prediction`` (n,) int, ``credibility`` (n,) (max p-value;
            the OOD score, higher = more in-distribution), ``confidence`` (n,) (1 - second largest
            p-value), ``p_values`` (n, K).
        """
        p_values = self.p_values(x)
        ordered = np.sort(p_values, axis=1)
        return {
            "prediction": np.argmax(p_values, axis=1),
            "credibility": ordered[:, -1],
            "confidence": 1.0 - ordered[:, -2],
            "p_values": p_values,
        }
