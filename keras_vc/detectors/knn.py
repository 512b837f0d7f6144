"""Deep nearest-neighbour distance on normalised features (KNN)."""

import numpy as np
from keras import ops

from keras_vc import _validation
from keras_vc.detectors import _streaming
from keras_vc.detectors.base import Detector
from keras_vc.ops import distances as distances_lib
from keras_vc.ops import neighbors


class KNN(Detector):
    """Distance to the k-th nearest training feature (Sun, Ming, Zhu, Li, ICML 2022,
    arXiv 2204.06507).

    Features are L2-normalised, ``h / ||h||``; the training ones are stored; the score is minus
    the Euclidean distance to the k-th nearest of them, ``s = -||h_hat - h_hat_(k)||`` (the paper's
    formula; the reference code ranks by the squared distance, the same order). The search is
    exact and chunked (``keras_vc.ops.neighbors``), as the reference's faiss ``IndexFlatL2``.

    Needs: features of ``layer`` (default the input of the head); no labels.

    Defaults: k = 50 (the paper and OpenOOD for CIFAR-10; the paper uses 200 for CIFAR-100 and
    1000 for ImageNet) on every training sample (``max_samples=None``, as the reference); the
    paper's reduced variant keeps a random fraction: ``max_samples`` keeps a seeded uniform
    reservoir sample of that many rows.

    Memory at N = 50 000, D = 2 048: the stored bank is N x D float32 = 410 MB (fit briefly holds
    it twice, while the batches are joined); scoring adds ``score_batch x chunk_size`` float32
    distances (512 x 8 192 = 17 MB) per block. ``score_tensor`` embeds the bank as a constant.

    Args:
        model: the trained classifier, or None.
        layer, pooling: as :class:`Mahalanobis`.
        k: neighbour rank >= 1; at most the number of stored features.
        max_samples: keep at most this many training features (None: all).
        seed: seed of the reservoir sample.
        chunk_size: stored features per distance block.
    """

    score_batch = 512

    def __init__(self, model=None, layer=None, pooling=None, k=50, max_samples=None, seed=0,
                 chunk_size=8192):
        self.k = _validation.check_int(k, "k", minimum=1)
        if max_samples is not None:
            max_samples = _validation.check_int(max_samples, "max_samples", minimum=1)
        self.max_samples = max_samples
        self.seed = _validation.check_int(seed, "seed", minimum=0)
        self.chunk_size = _validation.check_int(chunk_size, "chunk_size", minimum=1)
        self._chunks = None
        super().__init__(model, layer, pooling)

    def get_config(self):
        return {"layer": self.layer, "pooling": self.pooling, "k": self.k,
                "max_samples": self.max_samples, "seed": self.seed, "chunk_size": self.chunk_size}

    def _begin(self, num_features):
        super()._begin(num_features)
        self._reservoir = _streaming.Reservoir(self.max_samples, self.seed)

    def _update(self, features, labels):
        self._reservoir.add(ops.convert_to_numpy(distances_lib.l2_normalize(
            features.astype(np.float32))))

    def _finish(self):
        bank, self._reservoir = self._reservoir.rows(), None
        if bank.shape[0] < self.k:
            raise ValueError(f"KNN with k={self.k} needs at least {self.k} training samples; got "
                             f"{bank.shape[0]}.")
        self._set_fitted_state({"bank": bank})

    @property
    def bank(self):
        """The stored normalised training features, (n, D) float32 (None before fit)."""
        if self._chunks is None:
            return None
        return np.concatenate([ops.convert_to_numpy(chunk) for chunk in self._chunks])

    def _fitted_state(self):
        return {"bank": self.bank}

    def _set_fitted_state(self, arrays):
        # Held once, as backend tensors in search chunks (a NumPy copy only while saving).
        bank = np.asarray(arrays["bank"], dtype=np.float32)
        self._chunks = [ops.convert_to_tensor(bank[start:start + self.chunk_size])
                        for start in range(0, bank.shape[0], self.chunk_size)]

    def score_tensor(self, features):
        """``-||h_hat - h_hat_(k)||`` of (batch, D) features, keras.ops only (float32)."""
        self._require_fitted("score_tensor")
        queries = distances_lib.l2_normalize(ops.cast(features, "float32"))
        squared, _ = neighbors.chunked_nearest(queries, self._chunks, self.k)
        return -ops.sqrt(ops.maximum(squared[:, self.k - 1], 0.0))
