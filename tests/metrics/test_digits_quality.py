from __future__ import annotations

import numpy as np
import pytest

from jaxdiff.data.digits import load_digits
from jaxdiff.metrics import class_histogram, digits_fd, digits_fd_reference, label_entropy


def test_test_split_against_itself_is_zero(digits_classifier):
    assert digits_fd(load_digits("test")[0], digits_classifier) < 1e-6


def test_floor_is_far_below_baselines(digits_classifier):
    ref = digits_fd_reference(360, classifier=digits_classifier)
    assert set(ref) == {"floor", "pixel_baseline", "noise_baseline"}
    assert 0.0 < 10 * ref["floor"] < ref["pixel_baseline"] < ref["noise_baseline"]
    assert digits_fd_reference(360, classifier=digits_classifier) == ref
    with pytest.raises(ValueError, match="num_samples"):
        digits_fd_reference(1)


def test_class_histogram_and_entropy(digits_classifier):
    images, labels = load_digits("test")
    hist = class_histogram(images, digits_classifier)
    assert hist.shape == (10,) and hist.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(hist, np.bincount(labels) / len(labels), atol=0.03)
    assert label_entropy(images, digits_classifier) > 2.25
    assert label_entropy(np.repeat(images[:1], 40, axis=0), digits_classifier) == 0.0
