"""Sample-quality metrics: Fréchet distance, sliced W2, MMD, and a digits FD with its references."""

from __future__ import annotations

from jaxdiff.metrics.digits_classifier import (
    DigitsClassifier,
    default_classifier,
    digit_features,
    digit_logits,
    load_digits_classifier,
    train_digits_classifier,
)
from jaxdiff.metrics.digits_quality import class_histogram, digits_fd, digits_fd_reference, label_entropy
from jaxdiff.metrics.distances import mmd, sliced_wasserstein
from jaxdiff.metrics.frechet import frechet_distance, gaussian_stats

__all__ = [
    "DigitsClassifier",
    "class_histogram",
    "default_classifier",
    "digit_features",
    "digit_logits",
    "digits_fd",
    "digits_fd_reference",
    "frechet_distance",
    "gaussian_stats",
    "label_entropy",
    "load_digits_classifier",
    "mmd",
    "sliced_wasserstein",
    "train_digits_classifier",
]
