"""The network's options beyond the seed: architecture, DEX head, augmentation, bf16, schedules, TTA."""

import pickle

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

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
    assert {"bn_1_1", "conv_2_2", "pool", "age_distribution", "flip", "affine", "contrast"} <= names
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
    plain_age, plain_p = fitted.predict(X)[:, 0], fitted.predict_proba(X)[:, 1]
    mirror_age, mirror_p = fitted.predict(X[:, :, ::-1, :])[:, 0], fitted.predict_proba(X[:, :, ::-1, :])[:, 1]
    fitted.set_params(flip_tta=True)
    try:
        proba = fitted.predict_proba(X)
        age = fitted.predict(X)[:, 0]
    finally:
        fitted.set_params(flip_tta=False)
    np.testing.assert_allclose(proba[:, 1], (plain_p + mirror_p) / 2, rtol=1e-5)
    np.testing.assert_allclose(age, (plain_age + mirror_age) / 2, rtol=1e-5)


@pytest.mark.parametrize("flip_tta, zoom_tta", [(False, ()), (True, ()), (True, (1.2, 0.8))])
def test_small_and_large_batches_agree(fitted, flip_tta, zoom_tta):
    # Many images go through the compiled function in chunks (all views of a chunk in one batch): every image,
    # on either side of a chunk boundary, gets the prediction that it gets alone or in a small batch.
    X = np.random.RandomState(1).randint(0, 256, (100, 16, 16, 1)).astype(np.uint8)
    fitted.set_params(flip_tta=flip_tta, zoom_tta=zoom_tta)
    try:
        large = fitted.predict_with_proba(X)
        small = [fitted.predict_with_proba(X[rows]) for rows in (slice(0, 5), slice(60, 70), slice(99, 100))]
    finally:
        fitted.set_params(flip_tta=False, zoom_tta=())
    for rows, (y_small, proba_small) in zip((slice(0, 5), slice(60, 70), slice(99, 100)), small):
        np.testing.assert_allclose(large[1][rows], proba_small, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(large[0][rows, 0], y_small[:, 0], rtol=1e-5, atol=1e-4)


def test_one_network_call_holds_a_bounded_number_of_pixels(fitted, monkeypatch):
    from skface.network import inference

    assert inference.images_per_call((80, 80, 3), (1.075, 0.935), True) == 64  # the shipped model's six views
    assert inference.images_per_call((512, 512, 3), (1.1,) * 8, True) == 1
    n = inference.images_per_call((200, 200, 1), (1.1,), True)
    assert n * 4 * 200 * 200 <= inference.PREDICT_PIXELS < (n + 1) * 4 * 200 * 200
    # And predictions follow it: with a budget of 3 images of 16x16, 7 images take 3 calls, as they would alone.
    X = np.random.RandomState(2).randint(0, 256, (7, 16, 16, 1)).astype(np.uint8)
    expected = fitted.predict_proba(X)
    monkeypatch.setattr(inference, "PREDICT_PIXELS", 3 * 16 * 16)
    assert inference.images_per_call((16, 16, 1), (), False) == 3
    np.testing.assert_allclose(fitted.predict_proba(X), expected, rtol=1e-5, atol=1e-6)


def _zoomed(images, zoom):
    """Bilinear zoom about the centre with edge pixels repeated, written out in NumPy."""
    _, h, w, _ = images.shape
    scale, cy, cx = 1 / zoom, (h - 1) / 2, (w - 1) / 2
    ys = np.clip(cy + scale * (np.arange(h) - cy), 0, h - 1)
    xs = np.clip(cx + scale * (np.arange(w) - cx), 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[None, :, None, None], (xs - x0)[None, None, :, None]
    img = images.astype("float64")
    top = img[:, y0][:, :, x0] * (1 - fx) + img[:, y0][:, :, x1] * fx
    bottom = img[:, y1][:, :, x0] * (1 - fx) + img[:, y1][:, :, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype("float32")


def test_zoom_tta_averages_the_zoomed_views(fitted, tiny_data):
    X, _ = tiny_data
    X = X[:8]
    plain = fitted.predict_with_proba(X)
    zoomed = fitted.predict_with_proba(_zoomed(X, 1.5))
    fitted.set_params(zoom_tta=(1.5,))
    try:
        averaged = fitted.predict_with_proba(X)
        fitted.set_params(zoom_tta=(1.0,))  # a view equal to the image leaves every prediction as it was
        unchanged = fitted.predict_with_proba(X)
    finally:
        fitted.set_params(zoom_tta=())
    np.testing.assert_allclose(averaged[1][:, 1], (plain[1][:, 1] + zoomed[1][:, 1]) / 2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(averaged[0][:, 0], (plain[0][:, 0] + zoomed[0][:, 0]) / 2, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(unchanged[1], plain[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("zoom_tta", [(0.1,), "1.1", (1.1, "x"), 1.1, (1.1,) * 9])
def test_bad_zoom_tta_is_a_clear_error_at_predict_time(fitted, tiny_data, zoom_tta):
    X, _ = tiny_data
    fitted.set_params(zoom_tta=zoom_tta)
    try:
        with pytest.raises(ValueError, match=r"zoom_tta must be a tuple of at most 8 zoom factors between 0.5 and 2"):
            fitted.predict(X[:2])
    finally:
        fitted.set_params(zoom_tta=())


def test_training_batches_cover_every_row_once_per_epoch_in_a_new_order():
    from skface.network.input_pipeline import array_dataset

    X = np.arange(10, dtype="float32").reshape(10, 1, 1, 1)
    dataset = array_dataset(X, {"age": np.arange(10.0) * 2}, batch_size=4, shuffle=True, seed=0)
    epochs = [[(np.asarray(images).ravel(), np.asarray(targets["age"])) for images, targets in dataset]
              for _ in range(2)]
    for batches in epochs:
        assert [len(images) for images, _ in batches] == [4, 4, 2]
        rows = np.concatenate([images for images, _ in batches])
        assert sorted(rows) == list(range(10))
        np.testing.assert_array_equal(np.concatenate([ages for _, ages in batches]), rows * 2)  # rows stay paired
    assert not np.array_equal(*(np.concatenate([images for images, _ in b]) for b in epochs))
    in_order = array_dataset(X, {"age": np.arange(10.0)}, batch_size=4, shuffle=False)
    assert np.concatenate([np.asarray(images).ravel() for images, _ in in_order]).tolist() == list(range(10))


def test_refit_predicts_with_the_new_network(tiny_data):
    X, y = tiny_data
    estimator = AgeGenderCNN(**TINY).fit(X, y)
    before = estimator.predict_proba(X[:3])
    estimator.set_params(random_state=1, epochs=3).fit(X, y)
    after = estimator.predict_proba(X[:3])
    fresh = AgeGenderCNN(**{**TINY, "random_state": 1, "epochs": 3}).fit(X, y).predict_proba(X[:3])
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, fresh, rtol=1e-5)


def test_random_affine_is_identity_at_inference_and_at_zero_strength():
    import keras

    from skface.network.augment import RandomAffine

    images = np.random.RandomState(0).uniform(0, 255, (4, 12, 10, 3)).astype("float32")
    layer = RandomAffine(seed=0)
    np.testing.assert_array_equal(np.asarray(layer(images, training=False)), images)
    np.testing.assert_allclose(np.asarray(RandomAffine(0, 0, 0)(images, training=True)), images, atol=1e-3)
    moved = np.asarray(layer(images, training=True))
    assert moved.shape == images.shape and not np.allclose(moved, images)
    assert moved.min() >= images.min() - 1e-3 and moved.max() <= images.max() + 1e-3  # bilinear, edges repeated
    clone = keras.layers.deserialize(keras.layers.serialize(RandomAffine(0.1, 0.2, 0.05, seed=3)))
    assert (clone.rotation, clone.zoom, clone.shift, clone.seed) == (0.1, 0.2, 0.05, 3)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"architecture": "resnet"}, r"'architecture' parameter of AgeGenderCNN must be a str among .*'vgg_bn'"),
        ({"age_head": "ordinal"}, "'age_head' parameter of AgeGenderCNN must be a str among"),
        ({"precision": "float16"}, "'precision' parameter of AgeGenderCNN must be a str among"),
        ({"lr_schedule": "step"}, "'lr_schedule' parameter of AgeGenderCNN must be a str among"),
        ({"weight_decay": -1.0}, r"'weight_decay' parameter of AgeGenderCNN must be a float in the range \[0.0, 1.0\)"),
        ({"label_smoothing": 0.5}, r"'label_smoothing' parameter of AgeGenderCNN must be a float in the range \[0.0, 0.5\)"),
        ({"bottleneck": -1}, r"'bottleneck' parameter of AgeGenderCNN must be an int in the range \[0, inf\). Got -1"),
        ({"bottleneck": 2.5}, "'bottleneck' parameter of AgeGenderCNN must be an int"),
    ],
)
def test_bad_option_values(tiny_data, params, match):
    X, y = tiny_data
    with pytest.raises(InvalidParameterError, match=match):
        AgeGenderCNN(**{**TINY, **params}).fit(X, y)


def test_age_distribution_targets():
    from skface.network.architecture import age_distribution

    targets = age_distribution([0, 30, 200])
    assert targets.shape == (3, 121)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
    assert list(targets.argmax(axis=1)) == [0, 30, 120]  # ages beyond the last bin are clipped to it


def test_dex_history_has_the_distribution_loss(modern):
    assert "age_distribution_loss" in modern.history_ and "val_age_mae" in modern.history_


def test_bottleneck_keeps_the_layout_and_shrinks_the_dense_layers(tiny_data):
    X, y = tiny_data
    plain = AgeGenderCNN(**TINY).fit(X, y)
    narrow = AgeGenderCNN(**{**TINY, "bottleneck": 2}).fit(X, y)
    assert narrow.model_.get_layer("bottleneck").filters == 2
    flat = narrow.model_.get_layer("flatten").output.shape[-1]
    assert flat == 2 * plain.model_.get_layer("flatten").output.shape[-1] // TINY["filters"][-1]
    assert narrow.model_.count_params() < plain.model_.count_params()
    assert narrow.predict(X).shape == (len(X), 2)
