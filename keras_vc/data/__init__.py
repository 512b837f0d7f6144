"""Offline datasets and loaders."""

from keras_vc.data.offline import Split
from keras_vc.data.offline import load_digits
from keras_vc.data.offline import load_mnist1d
from keras_vc.data.offline import stratified_split
from keras_vc.data.tutorial import TutorialData
from keras_vc.data.tutorial import load_tutorial_data
