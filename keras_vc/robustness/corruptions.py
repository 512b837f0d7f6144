"""Input corruptions at five severities, in the style of CIFAR-10-C (Hendrycks & Dietterich 2019).

Every corruption takes a batch ``(n, ...)``, a severity in 0-5 (0 returns the input unchanged)
and the dataset's ``value_range = (low, high)``. Additive strengths are relative to the standard
deviation ``sd`` of the values (``value_std``, by default that of the batch), so that a severity
means a similar signal-to-noise ratio on digits in [0, 1] and on MNIST-1D signals (values in
about [-5, 5], most within +-1); geometric strengths are in positions or relative to the input
size. Outputs are clipped to ``value_range``. The "background" value is
``b = clip(0, low, high)`` (black pixels, a zero signal).

Corruptions (parameters for severities 1-5; the inputs they apply to):

* ``gaussian_noise``: ``x + N(0, (s sd)^2)``, s = 0.25, 0.5, 0.75, 1, 1.5 (all inputs).
* ``blur``: Gaussian blur along the spatial axes, sigma = 0.3, 0.5, 0.7, 1, 1.3 positions
  (signals, images).
* ``scale``: ``b + f (x - b)``, values scaled towards the background, f = 0.8, 0.65, 0.5, 0.35,
  0.2 (all inputs).
* ``offset``: ``x +- c sd`` with a random sign per input, c = 0.1, 0.2, 0.35, 0.5, 0.75 (all).
* ``shift``: translation by ``t L`` positions (linear interpolation, so fractions of a position
  count) in a random diagonal direction per input (``+- t L / sqrt(d)`` along each of the ``d``
  spatial axes), L the mean spatial size, t = 0.05, 0.1, 0.15, 0.2, 0.25; vacated positions take
  the background value (signals, images).
* ``dropout``: each value set to the background with probability p = 0.05, 0.1, 0.2, 0.3, 0.45
  (all inputs).
* ``contrast``: ``m + c (x - m)`` with m the input's mean, c = 0.75, 0.6, 0.45, 0.3, 0.15
  (images).
* ``rotation``: rotation by +-d degrees (bilinear, background fill), d = 5, 10, 15, 20, 30
  (images).

The CIFAR-10-C parameters themselves are tuned to 32x32 photos; these are chosen so that
severity 5 clearly degrades a small model on digits and MNIST-1D without destroying every input.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    >>> noisy = corrupt(x, "gaussian_noise", 3, value_range=(0.0, 1.0), seed=0)
    >>> noisy.shape
    (4, 8, 8, 1)
"""

import dataclasses

import numpy as np

from keras_vc import _validation
from keras_vc.data.offline import kind_of

NUM_SEVERITIES = 5


@dataclasses.dataclass(frozen=True)
class Corruption:
    """A corruption: its parameters for severities 1-5 and the input kinds it applies to."""

    name: str
    description: str
    parameters: tuple
    kinds: tuple


CORRUPTIONS = {
    c.name: c
    for c in (
        Corruption("gaussian_noise", "additive Gaussian noise, std = s x value std",
                   (0.25, 0.5, 0.75, 1.0, 1.5), ("vector", "signal", "image")),
        Corruption("blur", "Gaussian blur, sigma in positions",
                   (0.3, 0.5, 0.7, 1.0, 1.3), ("signal", "image")),
        Corruption("scale", "values scaled towards the background by f",
                   (0.8, 0.65, 0.5, 0.35, 0.2), ("vector", "signal", "image")),
        Corruption("offset", "values offset by +-c x value std",
                   (0.1, 0.2, 0.35, 0.5, 0.75), ("vector", "signal", "image")),
        Corruption("shift", "translation by a fraction t of the size (interpolated)",
                   (0.05, 0.1, 0.15, 0.2, 0.25), ("signal", "image")),
        Corruption("dropout", "values set to the background with probability p",
                   (0.05, 0.1, 0.2, 0.3, 0.45), ("vector", "signal", "image")),
        Corruption("contrast", "contrast scaled by c around the image mean",
                   (0.75, 0.6, 0.45, 0.3, 0.15), ("image",)),
        Corruption("rotation", "rotation by +-d degrees",
                   (5.0, 10.0, 15.0, 20.0, 30.0), ("image",)),
    )
}


def available_corruptions(x_or_kind):
    """Names of the corruptions that apply to a batch (or to a kind: vector, signal, image)."""
    kind = x_or_kind if isinstance(x_or_kind, str) else kind_of(x_or_kind)
    _validation.check_choice(kind, "kind", ("vector", "signal", "image"))
    return tuple(name for name, c in CORRUPTIONS.items() if kind in c.kinds)


def _spatial_axes(x):
    return tuple(range(1, x.ndim - 1))


def _random_signs(rng, shape):
    return np.where(rng.random(shape) < 0.5, -1, 1)


def _ndimage():
    """``scipy.ndimage``, imported on first use so that `import keras_vc` stays free of SciPy."""
    from scipy import ndimage

    return ndimage


def _shift(x, fraction, background, rng):
    axes = _spatial_axes(x)
    size = float(np.mean([x.shape[a] for a in axes]))
    amount = fraction * size / np.sqrt(len(axes))
    signs = _random_signs(rng, (x.shape[0], len(axes)))
    out = np.empty_like(x)
    for pattern in np.unique(signs, axis=0):
        members = np.flatnonzero(np.all(signs == pattern, axis=1))
        shift = [0.0] + [float(sign) * amount for sign in pattern] + [0.0]
        out[members] = _ndimage().shift(x[members], shift, order=1, mode="constant",
                                       cval=background)
    return out


def _rotate(x, degrees, background, rng):
    out = np.empty_like(x)
    signs = _random_signs(rng, x.shape[0])
    for sign in (-1, 1):
        members = np.flatnonzero(signs == sign)
        if members.size:
            out[members] = _ndimage().rotate(x[members], sign * degrees, axes=(1, 2), reshape=False,
                                            order=1, mode="constant", cval=background)
    return out


def corrupt(x, corruption, severity, value_range=None, seed=0, value_std=None):
    """Applies one corruption at one severity to a batch of inputs.

    Args:
        x: batch of inputs: vectors (n, d), signals (n, length, channels) or images
            (n, height, width, channels).
        corruption: a name from :data:`CORRUPTIONS` that applies to this kind of input (see
            :func:`available_corruptions`).
        severity: integer in 0-5; 0 returns a copy of ``x``.
        value_range: ``(low, high)`` of the dataset's values (default: the range of ``x``).
        seed: non-negative integer; fixes the noise, signs and dropout masks.
        value_std: standard deviation of the dataset's values, the unit of ``gaussian_noise``
            and ``offset`` (default: the standard deviation of ``x``).

    Returns:
        float32 array of the shape of ``x``, values in ``value_range``.
    """
    x = _validation.check_finite_array(x, "x")
    kind = kind_of(x)
    _validation.check_choice(corruption, "corruption", tuple(CORRUPTIONS))
    spec = CORRUPTIONS[corruption]
    if kind not in spec.kinds:
        raise ValueError(
            f"`corruption` {corruption!r} applies to {list(spec.kinds)} inputs, not to {kind} "
            f"inputs of shape {x.shape}; available: {list(available_corruptions(kind))}."
        )
    severity = _validation.check_int(severity, "severity", minimum=0)
    if severity > NUM_SEVERITIES:
        raise ValueError(f"`severity` must be in [0, {NUM_SEVERITIES}], got {severity}.")
    seed = _validation.check_int(seed, "seed", minimum=0)
    if value_range is None:
        value_range = (float(x.min()), float(x.max()))
    if len(value_range) != 2:
        raise ValueError(f"`value_range` must be (low, high), got {value_range!r}.")
    low = _validation.check_float(value_range[0], "value_range[0]")
    high = _validation.check_float(value_range[1], "value_range[1]")
    if not high > low:
        raise ValueError(f"`value_range` must have high > low, got {value_range!r}.")
    if value_std is None:
        value_std = float(x.std())
    value_std = _validation.check_float(value_std, "value_std", minimum=0.0)
    if severity == 0:
        return x.astype(np.float32)
    background = float(np.clip(0.0, low, high))
    p = spec.parameters[severity - 1]
    rng = np.random.default_rng(seed)
    if corruption == "gaussian_noise":
        y = x + rng.normal(0.0, p * value_std, size=x.shape)
    elif corruption == "blur":
        sigma = [0.0] + [p] * (x.ndim - 2) + [0.0]
        y = _ndimage().gaussian_filter(x, sigma=sigma, mode="constant", cval=background)
    elif corruption == "scale":
        y = background + p * (x - background)
    elif corruption == "offset":
        signs = _random_signs(rng, x.shape[0]).reshape((-1,) + (1,) * (x.ndim - 1))
        y = x + signs * p * value_std
    elif corruption == "shift":
        y = _shift(x, p, background, rng)
    elif corruption == "dropout":
        y = np.where(rng.random(x.shape) < p, background, x)
    elif corruption == "contrast":
        mean = x.mean(axis=tuple(range(1, x.ndim)), keepdims=True)
        y = mean + p * (x - mean)
    else:  # rotation
        y = _rotate(x, p, background, rng)
    return np.clip(y, low, high).astype(np.float32)


def corrupt_all(x, value_range=None, seed=0, corruptions=None,
                severities=tuple(range(1, NUM_SEVERITIES + 1)), value_std=None):
    """Every applicable corruption at every severity: ``{(name, severity): corrupted x}``.

    Each (corruption, severity) pair draws its randomness from its own seed derived from
    ``seed``, so the result of one pair does not depend on which others are requested.

    Args:
        x: batch of inputs.
        value_range: ``(low, high)`` of the dataset's values.
        seed: non-negative integer.
        corruptions: names (default: every corruption that applies to ``x``).
        severities: severities to apply (each in 0-5).
        value_std: the unit of the additive corruptions (default: the std of ``x``).

    Returns:
        dict mapping ``(name, severity)`` to a float32 array of the shape of ``x``.
    """
    seed = _validation.check_int(seed, "seed", minimum=0)
    if value_std is None:
        value_std = float(np.std(x))
    names = available_corruptions(np.asarray(x)) if corruptions is None else tuple(corruptions)
    order = tuple(CORRUPTIONS)
    result = {}
    for name in names:
        _validation.check_choice(name, "corruptions", order)
        for severity in severities:
            pair_seed = seed * 1000 + order.index(name) * 10 + int(severity)
            result[(name, int(severity))] = corrupt(x, name, severity, value_range, pair_seed,
                                                    value_std)
    return result
