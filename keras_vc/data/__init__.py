"""Datasets: the bundled offline data, OOD sets built offline, and loaders for the user's data.

* :mod:`keras_vc.data.offline`: ``digits`` and ``mnist1d`` (nothing is downloaded), the
  :class:`Split` and :class:`Dataset` containers, seeded stratified splits.
* :mod:`keras_vc.data.ood`: far-OOD photo patches, position-shuffled inputs, open-set splits.
* :mod:`keras_vc.data.loaders`: ``tfds:NAME`` (prepared TensorFlow Datasets) and ``folder:PATH``
  (class-per-folder images), and :func:`load_dataset` that resolves a ``--dataset`` argument.
"""

from keras_vc.data.loaders import DatasetError
from keras_vc.data.loaders import load_dataset
from keras_vc.data.loaders import load_folder
from keras_vc.data.loaders import load_tfds
from keras_vc.data.offline import OFFLINE_DATASETS
from keras_vc.data.offline import Dataset
from keras_vc.data.offline import Split
from keras_vc.data.offline import digits_dataset
from keras_vc.data.offline import load_digits
from keras_vc.data.offline import load_mnist1d
from keras_vc.data.offline import mnist1d_dataset
from keras_vc.data.offline import stratified_split
from keras_vc.data.ood import OpenSetSplit
from keras_vc.data.ood import open_set_split
from keras_vc.data.ood import photo_patches
from keras_vc.data.ood import shuffle_positions
from keras_vc.data.tutorial import TutorialData
from keras_vc.data.tutorial import load_tutorial_data
