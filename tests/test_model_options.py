"""The network's options beyond the seed: architecture, DEX head, augmentation, bf16, schedules, TTA."""

import pickle

import numpy as np
import pytest

from skface import AgeGenderCNN
from tests.conftest import TINY

MODERN = {**TINY, "architecture": "vgg_bn", "age_head": "dex", "augment": True, "precision": "mixed_bfloat16",
          "lr_schedule": "cosine", "weight_decay": 1e-4, "label_smoothing": 0.1}


@pytest.fixture(scope="module")
def modern(tiny_data):
    X, y = tiny_data
    return AgeGenderCNN(**MODERN).fit(X, y)


def test_modern_configuration_fits_and_predicts(modern, tiny_data):
    X, _ = tiny_data
    y_pred = modern.predict(X)
    assert y_pred.shape == (len(X), 2) and np.all(y_pred[:, 0] >= 0) and np.all(y_pred[:, 0] <= 120)
    names = {layer.name for layer in modern.model_.layers}
    assert {"bn_1_1", "conv_2_2", "pool", "age_distribution", "flip"} <= names
    assert modern.model_.get_layer("conv_1_1").compute_dtype == "bfloat16"
    assert modern.model_.get_layer("age").compute_dtype == "float32"


def test_dex_expectation_weights_stay_fixed(modern):
    weights = modern.model_.get_layer("age").get_weights()[0].ravel()
    np.testing.assert_array_equal(weights, np.arange(121, dtype="float32"))


def test_cosine_schedule_decays_the_learning_rate(modern):
    assert float(modern.model_.optimizer.learning_rate) < TINY.get("learning_rate", 1e-3)


def test_modern_model_survives_pickling(modern, tiny_data):
    X, _ = tiny_data
    restored = pickle.loads(pickle.dumps(modern))
    np.testing.assert_allclose(restored.predict_proba(X), modern.predict_proba(X), rtol=1e-5)


def test_flip_tta_averages_the_mirrored_prediction(fitted, tiny_data):
    X, _ = tiny_data
    plain_age, plain_p = fitted._forward(X.astype("float32"))
    mirror_age, mirror_p = fitted._forward(X[:, :, ::-1, :].astype("float32"))
    fitted.set_params(flip_tta=True)
    try:
        proba = fitted.predict_proba(X)
        age = fitted.predict(X)[:, 0]
    finally:
        fitted.set_params(flip_tta=False)
    np.testing.assert_allclose(proba[:, 1], (plain_p + mirror_p) / 2, rtol=1e-5)
    np.testing.assert_allclose(age, (plain_age + mirror_age) / 2, rtol=1e-5)


def test_small_and_large_batches_agree(fitted):
    X = np.random.RandomState(1).randint(0, 256, (100, 16, 16, 1)).astype(np.uint8)
    np.testing.assert_allclose(fitted.predict_proba(X)[:5], fitted.predict_proba(X[:5]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"architecture": "resnet"}, r"architecture must be one of \['seed', 'vgg_bn'\]"),
        ({"age_head": "ordinal"}, "age_head must be one of"),
        ({"precision": "float16"}, "precision must be one of"),
        ({"lr_schedule": "step"}, "lr_schedule must be one of"),
        ({"weight_decay": -1.0}, r"weight_decay must be a float in \[0, 1\)"),
        ({"label_smoothing": 0.5}, r"label_smoothing must be a float in \[0, 0.5\)"),
    ],
)
def test_bad_option_values(tiny_data, params, match):
    X, y = tiny_data
    with pytest.raises(ValueError, match=match):
        AgeGenderCNN(**{**TINY, **params}).fit(X, y)


def test_age_distribution_targets():
    from skface.model import age_distribution

    targets = age_distribution([0, 30, 200])
    assert targets.shape == (3, 121)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
    assert list(targets.argmax(axis=1)) == [0, 30, 120]  # ages beyond the last bin are clipped to it


def test_dex_history_has_the_distribution_loss(modern):
    assert "age_distribution_loss" in modern.history_ and "val_age_mae" in modern.history_
