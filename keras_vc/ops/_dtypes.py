"""The one dtype rule of keras_vc's math: distances and Gaussian formulas run in float32 or
wider (their epsilons and log-densities underflow or lose every digit in float16)."""

from keras import ops


def float_tensor(x):
    """``x`` as a tensor of float32, or float64 if it already is: never a 16-bit float."""
    x = ops.convert_to_tensor(x)
    if ops.dtype(x) not in ("float32", "float64"):
        x = ops.cast(x, "float32")
    return x
