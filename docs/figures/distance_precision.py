"""Prints the float32 precision figures quoted in keras_vc/ops/distances.py and
keras_vc/layers/distance_logits.py (TensorFlow backend, a few seconds on a CPU).

    python docs/figures/distance_precision.py

1. Distances to the nearest prototype, at unit-vector distance 1e-2, 1e-3, 1e-4: the relative
   error against float64 of the matrix-product form ``sqrt(2 - 2 u.q)``
   (``keras_vc.ops.distances.unit_vector_distance``) and of
   ``keras_vc.ops.distances.prototype_distances``, for the distance and its gradients.
2. ``pairwise_squared_euclidean`` at a common offset of 0, 1e3, 1e4: the relative error of the
   uncentred matrix-product form and of keras_vc's (centred) function against float64.
The data are those of tests/test_distances.py (same generators and seeds).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_vc.ops import distances  # noqa: E402


def near_prototypes(distance, num_rows=16, num_classes=10, width=32, seed=0):
    """Features at ``distance`` (between unit vectors) from a random prototype each."""
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(size=(num_classes, width)) * rng.uniform(0.5, 3.0, (num_classes, 1))
    classes = rng.integers(0, num_classes, size=num_rows)
    unit = prototypes[classes] / np.linalg.norm(prototypes[classes], axis=1, keepdims=True)
    orthogonal = rng.normal(size=(num_rows, width))
    orthogonal -= (orthogonal * unit).sum(1, keepdims=True) * unit
    orthogonal /= np.linalg.norm(orthogonal, axis=1, keepdims=True)
    angle = 2.0 * np.arcsin(distance / 2.0)
    features = (np.cos(angle) * unit + np.sin(angle) * orthogonal)
    features *= rng.uniform(0.5, 3.0, (num_rows, 1))
    return features.astype(np.float32), prototypes.astype(np.float32), classes


def nearest_and_gradients(function, features, prototypes, classes, dtype):
    """The nearest prototype's distance and the gradients of their sum, in ``dtype``."""
    features = tf.constant(features, dtype)
    prototypes = tf.constant(prototypes, dtype)
    with tf.GradientTape() as tape:
        tape.watch([features, prototypes])
        nearest = tf.gather(function(features, prototypes), classes, axis=1, batch_dims=1)
        total = tf.reduce_sum(nearest)
    return [t.numpy().astype(np.float64)
            for t in [nearest] + tape.gradient(total, [features, prototypes])]


def direct(features, prototypes):
    """The textbook ``||x / |x| - p / |p| ||`` (float64 reference)."""
    unit_f = features / tf.norm(features, axis=-1, keepdims=True)
    unit_p = prototypes / tf.norm(prototypes, axis=-1, keepdims=True)
    return tf.norm(unit_f[:, None, :] - unit_p[None], axis=-1)


def matrix_product(features, prototypes):
    return distances.unit_vector_distance(distances.l2_normalize(features),
                                          distances.l2_normalize(prototypes))


def relative(actual, expected):
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def main():
    print("nearest-prototype distance, float32 relative error against float64")
    print(f"{'distance':>9} {'form':>16} {'value':>9} {'d/dfeat':>9} {'d/dproto':>9}")
    for distance in (1e-2, 1e-3, 1e-4):
        features, prototypes, classes = near_prototypes(distance)
        expected = nearest_and_gradients(direct, features, prototypes, classes, tf.float64)
        for name, function in (("sqrt(2 - 2 u.q)", matrix_product),
                               ("prototype_dist.", distances.prototype_distances)):
            actual = nearest_and_gradients(function, features, prototypes, classes, tf.float32)
            errors = [relative(a, e) for a, e in zip(actual, expected)]
            print(f"{distance:>9.0e} {name:>16} " + " ".join(f"{e:>9.2e}" for e in errors))
    print()
    print("pairwise squared Euclidean at a common offset, float32 relative error")
    print(f"{'offset':>9} {'uncentred':>10} {'keras_vc':>10}")
    for offset in (0.0, 1e3, 1e4):
        rng = np.random.default_rng(11)
        a = (rng.normal(size=(20, 16)) + offset).astype(np.float32)
        b = (rng.normal(size=(12, 16)) + offset).astype(np.float32)
        expected = ((a[:, None].astype(np.float64) - b[None]) ** 2).sum(-1)
        uncentred = np.maximum((a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None] - 2.0 * a @ b.T,
                               0.0)
        centred = np.asarray(distances.pairwise_squared_euclidean(a, b))
        print(f"{offset:>9.0e} {relative(uncentred, expected):>10.2e} "
              f"{relative(centred, expected):>10.2e}")


if __name__ == "__main__":
    main()
