"""Prints the time of one 64 x 128 standard-normal draw under XLA on the TensorFlow backend:
``keras.random.normal`` (TensorFlow's "auto_select" algorithm) against
``keras_vc.ops.gaussian.standard_normal`` (Philox), the figure quoted in
keras_vc/ops/gaussian.py. About half a minute on a CPU; timings depend on the machine.

    python docs/figures/stateless_normal_speed.py
"""

import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_vc.ops import gaussian  # noqa: E402

SHAPE = (64, 128)
CALLS = 200
REPEATS = 5


def median_ms(draw):
    generator = keras.random.SeedGenerator(0)
    compiled = tf.function(lambda: draw(generator), jit_compile=True)
    compiled().numpy()  # compile
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(CALLS):
            compiled()
        compiled().numpy()
        times.append((time.perf_counter() - start) / (CALLS + 1) * 1e3)
    return float(np.median(times))


def main():
    print(f"TensorFlow {tf.__version__}, one {SHAPE[0]} x {SHAPE[1]} draw under XLA, median of "
          f"{REPEATS} x {CALLS} calls")
    auto = median_ms(lambda seed: keras.random.normal(SHAPE, seed=seed))
    philox = median_ms(lambda seed: gaussian.standard_normal(SHAPE, seed))
    print(f"keras.random.normal (auto_select): {auto:.3f} ms")
    print(f"gaussian.standard_normal (Philox): {philox:.3f} ms")
    print(f"ratio: {auto / philox:.1f}x")


if __name__ == "__main__":
    main()
