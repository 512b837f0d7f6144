"""Robustness tools: adversarial attacks, input corruptions and low-data subsets.

* :mod:`keras_vc.robustness.attacks`: FGSM and PGD (L-infinity) through a Keras classifier
  whose output is logits.
* :mod:`keras_vc.robustness.corruptions`: CIFAR-10-C style corruptions at severities 1-5.
* :mod:`keras_vc.robustness.subsets`: stratified, nested training subsets for low-data runs.
"""

from keras_vc.robustness.attacks import fgsm
from keras_vc.robustness.attacks import pgd
from keras_vc.robustness.corruptions import CORRUPTIONS
from keras_vc.robustness.corruptions import available_corruptions
from keras_vc.robustness.corruptions import corrupt
from keras_vc.robustness.corruptions import corrupt_all
from keras_vc.robustness.subsets import stratified_subset_indices
from keras_vc.robustness.subsets import subsample_training
