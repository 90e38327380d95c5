"""Data: sample datasets, folder datasets, augmentation, weight maps, normalisation."""
from .normalization import Normalization
from .classes import ClassTable
from .samples import FashionScenes, SampleSplit, list_samples, load_sample
