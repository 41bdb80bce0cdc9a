"""Sample quality on the 8x8 digits: Fréchet distance in ``DigitsNet`` features.

The reference set is always the held-out test split (360 digits). FD estimated
from N samples is biased upwards, roughly like 1/N, so a number means
something only next to references at the *same* N: ``digits_fd_reference(N)``
gives the floor (real train digits) and baselines (structureless images).
"""

from __future__ import annotations

import numpy as np

from jaxdiff.data.digits import load_digits
from jaxdiff.metrics.digits_classifier import DigitsClassifier, default_classifier
from jaxdiff.metrics.frechet import frechet_distance, gaussian_stats


def digits_fd(samples, classifier: DigitsClassifier | None = None) -> float:
    """FD between ``samples`` and the digits test split in classifier features.

    Args:
        samples: (N, 8, 8, 1), N >= 2, on the data scale [-1, 1]; values outside
            are scored as they are (clip first if the sampler may overshoot).
        classifier: feature network; default ``default_classifier()``.

    Returns:
        Python float. Biased for small N: compare only against
        ``digits_fd_reference(N)`` at the same N.
    """
    clf = classifier or default_classifier()
    mu, cov = gaussian_stats(clf.features(samples))
    mu_ref, cov_ref = gaussian_stats(clf.features(load_digits("test")[0]))
    return frechet_distance(mu, cov, mu_ref, cov_ref)


def digits_fd_reference(
    num_samples: int, seed: int = 0, classifier: DigitsClassifier | None = None
) -> dict[str, float]:
    """Reference FDs at sample size ``num_samples``, against the test split.

    Returns:
        ``floor``: ``num_samples`` real train digits, drawn without replacement
        (with replacement only when ``num_samples`` exceeds the 1437 train
        digits); what a perfect model scores at this N.
        ``pixel_baseline``: each pixel drawn independently from its train
        marginal; right intensities, no strokes.
        ``noise_baseline``: N(0, 1) noise clipped to [-1, 1]; the sampler prior.
    """
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2, got {num_samples}")
    clf = classifier or default_classifier()
    rng = np.random.default_rng(seed)
    train = load_digits("train")[0]
    n = len(train)
    real = train[rng.choice(n, num_samples, replace=num_samples > n)]
    flat = train.reshape(n, 64)
    pixels = flat[rng.integers(0, n, (num_samples, 64)), np.arange(64)].reshape(-1, 8, 8, 1)
    noise = np.clip(rng.standard_normal((num_samples, 8, 8, 1)), -1.0, 1.0).astype(np.float32)
    return {
        "floor": digits_fd(real, clf),
        "pixel_baseline": digits_fd(pixels, clf),
        "noise_baseline": digits_fd(noise, clf),
    }


def class_histogram(samples, classifier: DigitsClassifier | None = None) -> np.ndarray:
    """Fraction of ``samples`` (N, 8, 8, 1) the classifier assigns to each digit: float64 (10,)."""
    logits = (classifier or default_classifier()).logits(samples)
    counts = np.bincount(np.argmax(logits, axis=-1), minlength=logits.shape[-1])
    return counts / counts.sum()


def label_entropy(samples, classifier: DigitsClassifier | None = None) -> float:
    """Entropy (nats) of ``class_histogram(samples)``; log(10) ~ 2.30 is uniform, low means mode collapse."""
    p = class_histogram(samples, classifier)
    p = p[p > 0]
    return float(np.sum(p * np.log(1.0 / p)))
