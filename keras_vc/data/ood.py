"""Out-of-distribution sets built offline from what ships with the installed packages.

* :func:`photo_patches`: far-OOD inputs cut from real photographs (scikit-learn's two bundled
  sample images, ``china.jpg`` and ``flower.jpg``), block-downscaled to the dataset's image size
  and scaled to its value range. For the 8x8 digits these are 8x8 grey patches.
* :func:`shuffle_positions`: each input with its positions (time steps, pixels) randomly permuted:
  the same values, no shape (used for MNIST-1D).
* :func:`open_set_split`: near-OOD by holding classes out: train on the first classes, the test
  samples of the others are out-of-distribution.

Every function is deterministic given its ``seed``.
"""

import dataclasses
import functools

import numpy as np

from keras_vc import _validation
from keras_vc.data.offline import Split

# ITU-R BT.601 luma weights, the usual RGB -> grey conversion.
_LUMA = np.array([0.299, 0.587, 0.114])


@functools.lru_cache(maxsize=1)
def _sample_photos():
    from sklearn.datasets import load_sample_images

    return tuple(np.asarray(image, dtype=np.float64) / 255.0
                 for image in load_sample_images().images)


def photo_patches(num_patches, image_shape=(8, 8, 1), value_range=(0.0, 1.0), seed=0,
                  downscale=(4, 5, 6, 7, 8), min_contrast=0.05):
    """Far-OOD patches cut from scikit-learn's bundled sample photographs.

    Each patch is a random crop of ``(height * f, width * f)`` pixels from one of the two photos,
    ``f`` drawn from ``downscale``, reduced to ``(height, width)`` by averaging ``f x f`` blocks,
    converted to grey for one channel (BT.601 luma) or kept RGB for three, and min-max scaled to
    ``value_range`` (so that, like the in-distribution images, each patch spans the whole
    range). Nearly flat crops (``max - min < min_contrast`` before scaling) are dropped, since
    their min-max scaling would only amplify JPEG noise.

    Args:
        num_patches: number of patches (>= 1).
        image_shape: ``(height, width, channels)`` with 1 or 3 channels; ``height * max(f)`` and
            ``width * max(f)`` must fit in the 427x640 photos.
        value_range: ``(low, high)`` of the output values.
        seed: non-negative integer.
        downscale: block sizes ``f`` (positive integers).
        min_contrast: minimum ``max - min`` of a crop in [0, 1] photo units.

    Returns:
        float32 array ``(num_patches,) + image_shape``.

    Example:
        >>> patches = photo_patches(100, (8, 8, 1))
        >>> patches.shape, float(patches.min()), float(patches.max())
        ((100, 8, 8, 1), 0.0, 1.0)
    """
    num_patches = _validation.check_int(num_patches, "num_patches", minimum=1)
    seed = _validation.check_int(seed, "seed", minimum=0)
    if len(tuple(image_shape)) != 3 or image_shape[2] not in (1, 3):
        raise ValueError(
            f"`image_shape` must be (height, width, channels) with 1 or 3 channels, got "
            f"{image_shape!r}."
        )
    height, width, channels = (_validation.check_int(v, "image_shape", minimum=1)
                               for v in image_shape)
    low, high = _validation.check_value_range(value_range)
    downscale = tuple(_validation.check_int(f, "downscale", minimum=1) for f in downscale)
    if not downscale:
        raise ValueError("`downscale` must not be empty.")
    min_contrast = _validation.check_float(min_contrast, "min_contrast", 0.0, 1.0)
    photos = _sample_photos()
    usable = tuple(f for f in downscale
                   if all(height * f <= p.shape[0] and width * f <= p.shape[1] for p in photos))
    if not usable:
        raise ValueError(
            f"`image_shape` {image_shape!r} times the block sizes {downscale} does not fit in the "
            f"{photos[0].shape[0]}x{photos[0].shape[1]} sample photos."
        )
    rng = np.random.default_rng(seed)
    patches = []
    attempts = 0
    while len(patches) < num_patches:
        attempts += 1
        if attempts > 50 * num_patches + 1000:
            raise RuntimeError("Could not find enough non-flat photo crops; lower `min_contrast`.")
        photo = photos[rng.integers(len(photos))]
        f = usable[rng.integers(len(usable))]
        top = rng.integers(photo.shape[0] - height * f + 1)
        left = rng.integers(photo.shape[1] - width * f + 1)
        crop = photo[top:top + height * f, left:left + width * f]
        crop = crop.reshape(height, f, width, f, 3).mean(axis=(1, 3))
        if channels == 1:
            crop = (crop @ _LUMA)[..., None]
        spread = crop.max() - crop.min()
        if spread < min_contrast:
            continue
        patches.append(low + (crop - crop.min()) / spread * (high - low))
    return np.stack(patches).astype(np.float32)


def shuffle_positions(x, seed=0):
    """Each input with its positions randomly permuted (a new permutation per input).

    Positions are the time steps of a signal ``(n, length, channels)`` or the pixels of an image
    ``(n, height, width, channels)``; the channels of a position move together. For vectors
    ``(n, d)`` the ``d`` features are permuted. The value distribution of every input is kept;
    its shape is destroyed.

    Args:
        x: array of inputs (n, ...).
        seed: non-negative integer.

    Returns:
        float32 array of the same shape.

    Example:
        >>> x = np.arange(6, dtype=np.float32).reshape(1, 6, 1)
        >>> sorted(shuffle_positions(x, seed=0).ravel().tolist())
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    """
    x = _validation.check_finite_array(x, "x")
    seed = _validation.check_int(seed, "seed", minimum=0)
    if x.ndim < 2:
        raise ValueError(f"`x` must be a batch (n, ...), got shape {x.shape}.")
    n = x.shape[0]
    if x.ndim == 2:
        flat = x[..., None]
    else:
        flat = x.reshape(n, -1, x.shape[-1])
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random(flat.shape[:2]), axis=1)
    shuffled = np.take_along_axis(flat, order[..., None], axis=1)
    return shuffled.reshape(x.shape).astype(np.float32)


@dataclasses.dataclass
class OpenSetSplit:
    """A split restricted to the known classes, plus the held-out classes' test samples.

    Attributes:
        split: a :class:`~keras_vc.data.Split` with only the known classes (labels unchanged:
            the known classes are ``0 .. num_known - 1``).
        x_unknown: test inputs of the held-out classes (the near-OOD set).
        y_unknown: their original labels.
        num_known: number of known classes.
    """

    split: Split
    x_unknown: np.ndarray
    y_unknown: np.ndarray
    num_known: int


def default_num_known(num_classes):
    """Known classes of the open-set protocol: the first 60% (6 of 10, as in the pilot)."""
    return max(2, (6 * num_classes) // 10)


def open_set_split(split, num_known=None):
    """Open-set version of a split: train, validate and test on classes ``0 .. num_known - 1``.

    The test samples of the held-out classes ``num_known .. K - 1`` form the near-OOD set. The
    validation samples of the held-out classes are dropped (never used, so that temperature
    scaling sees in-distribution data only).

    Args:
        split: a :class:`~keras_vc.data.Split` with ``num_classes >= 3``.
        num_known: number of known classes, in ``[2, num_classes - 1]`` (default: 60%).

    Returns:
        An :class:`OpenSetSplit`.

    Example:
        >>> from keras_vc.data import load_digits
        >>> open_set = open_set_split(load_digits(0))
        >>> open_set.num_known, sorted(set(open_set.y_unknown.tolist()))
        (6, [6, 7, 8, 9])
    """
    if not isinstance(split, Split):
        raise ValueError(f"`split` must be a keras_vc.data.Split, got {type(split).__name__}.")
    if split.num_classes < 3:
        raise ValueError(f"An open-set split needs at least 3 classes, got {split.num_classes}.")
    if num_known is None:
        num_known = default_num_known(split.num_classes)
    num_known = _validation.check_int(num_known, "num_known", minimum=2)
    if num_known >= split.num_classes:
        raise ValueError(
            f"`num_known` must be < num_classes ({split.num_classes}), got {num_known}."
        )

    def known(x, y):
        keep = y < num_known
        return x[keep], y[keep]

    x_train, y_train = known(split.x_train, split.y_train)
    x_val, y_val = known(split.x_val, split.y_val)
    x_test, y_test = known(split.x_test, split.y_test)
    unknown = split.y_test >= num_known
    known_split = Split(f"{split.name}[0-{num_known - 1}]", x_train, y_train, x_val, y_val,
                        x_test, y_test, num_known, split.value_range)
    return OpenSetSplit(known_split, split.x_test[unknown], split.y_test[unknown], num_known)
