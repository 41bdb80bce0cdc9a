from __future__ import annotations

import chex
import numpy as np
import pytest

from jaxdiff.data.digits import load_digits
from jaxdiff.metrics import digit_features, digit_logits, load_digits_classifier
from jaxdiff.metrics.digits_classifier import FEATURE_DIM, cache_path


def test_test_accuracy_and_shapes(digits_classifier):
    assert digits_classifier.test_accuracy >= 0.95
    images, labels = load_digits("test")
    feats, logits = digit_features(images[:7]), digit_logits(images)
    chex.assert_shape([feats, logits], [(7, FEATURE_DIM), (len(labels), 10)])
    chex.assert_type(feats, np.float32)
    assert np.mean(np.argmax(logits, -1) == labels) == pytest.approx(digits_classifier.test_accuracy)


def test_cache_roundtrip_and_deterministic_training(monkeypatch, tmp_path, digits_classifier):
    monkeypatch.setenv("JAXDIFF_CACHE", str(tmp_path))
    first = load_digits_classifier()
    assert first.source == "trained" and cache_path().parent == tmp_path and cache_path().exists()
    second = load_digits_classifier()
    assert second.source == "cache" and second.test_accuracy == first.test_accuracy
    images = load_digits("test")[0][:50]
    np.testing.assert_array_equal(first.features(images), second.features(images))
    chex.assert_trees_all_equal(first.params, digits_classifier.params)


def test_stale_cache_is_replaced(monkeypatch, tmp_path, digits_classifier):
    monkeypatch.setenv("JAXDIFF_CACHE", str(tmp_path))
    cache_path().write_bytes(b"not a msgpack file")
    import jaxdiff.metrics.digits_classifier as dc

    monkeypatch.setattr(dc, "train_digits_classifier", lambda: digits_classifier)
    assert load_digits_classifier().test_accuracy == digits_classifier.test_accuracy
    assert load_digits_classifier().source == "cache"


def test_bad_images_raise():
    with pytest.raises(ValueError, match="images"):
        digit_features(np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="images"):
        digit_logits(np.full((3, 8, 8, 1), np.nan))
