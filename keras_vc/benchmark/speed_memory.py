"""How ``keras-vc speed`` measures memory: the bytes of the state and the extra bytes of a step.

``state`` is the bytes of the variables (weights, optimizer slots, seed and metric state), exact
on every backend. ``step`` is the extra memory one training step needs on top of it:
TensorFlow's allocator statistics (peak during the step minus the bytes in use before it; on a
CPU only with the BFC allocator, see :data:`BFC_VARIABLE`), or XLA's planned temporary buffers
of the compiled step on JAX.
"""

import keras
import numpy as np

BFC_VARIABLE = "TF_CPU_ALLOCATOR_USE_BFC"


def variable_bytes(variables):
    return int(sum(np.prod(v.shape, dtype=np.int64) * np.dtype(v.dtype).itemsize
                   for v in variables))


def tf_memory_device():
    import tensorflow as tf

    return "GPU:0" if tf.config.list_logical_devices("GPU") else "CPU:0"


# A probe allocation of this many bytes must show in the allocator's peak; where it does not, the
# statistics exist but do not follow the device's allocations, and a step would read 0 bytes.
_PROBE_BYTES = 1 << 20


def tf_allocator_problem(device):
    """Why TensorFlow's allocator statistics on ``device`` cannot measure a step (None if they can).

    Checks that the statistics exist and that they follow a probe allocation of known size:
    readings must not depend on what the process ran before.
    """
    import tensorflow as tf

    try:
        tf.config.experimental.reset_memory_stats(device)
        before = tf.config.experimental.get_memory_info(device)["current"]
        with tf.device(device):
            probe = tf.zeros((_PROBE_BYTES // 4,), dtype="float32") + 1.0
        seen = int(tf.config.experimental.get_memory_info(device)["peak"] - before)
        del probe
    except (ValueError, RuntimeError):
        return (f"TensorFlow keeps no allocator statistics on {device} (on a CPU set "
                f"{BFC_VARIABLE}=1 before TensorFlow first allocates; `keras-vc speed` does)")
    if seen < _PROBE_BYTES:
        return (f"TensorFlow's allocator statistics on {device} do not follow its allocations "
                f"(a probe of {_PROBE_BYTES} bytes read {seen} bytes)")
    return None


def memory_method():
    """``(available, description)`` of how this backend's step memory is measured."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        device = tf_memory_device()
        problem = tf_allocator_problem(device)
        if problem is not None:
            return False, f"not available: {problem}"
        allocator = " (BFC allocator)" if device == "CPU:0" else ""
        caveat = (" (BFC charges an allocation for the whole free chunk it takes when the rest"
                  " is too small to split, up to twice the request: figures are upper bounds)"
                  if device == "CPU:0" else "")
        return True, (f"TensorFlow allocator on {device}{allocator}: peak bytes in use during "
                      f"one step minus the bytes in use before it{caveat}")
    if backend == "jax":
        return True, ("XLA's planned temporary buffers of the compiled step "
                      "(jax Compiled.memory_analysis().temp_size_in_bytes)")
    return False, f"not available on the {backend} backend"

