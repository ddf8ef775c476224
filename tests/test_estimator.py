import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError

from skface import AgeGenderCNN, ImagePreprocessor, NotFittedEstimatorError, metrics
from tests.conftest import TINY


def test_predict_shapes_and_ranges(fitted, tiny_data):
    X, _ = tiny_data
    y_pred = fitted.predict(X)
    assert y_pred.shape == (len(X), 2)
    assert np.all(y_pred[:, 0] >= 0)
    assert set(np.unique(y_pred[:, 1])) <= {0.0, 1.0}
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(y_pred[:, 1], (proba[:, 1] >= 0.5).astype(float))


def test_fitted_attributes(fitted):
    assert fitted.input_shape_ == (16, 16, 1)
    assert fitted.n_epochs_ == 2
    assert {"loss", "age_mae", "gender_accuracy", "val_loss", "val_age_mae"} <= set(fitted.history_)
    assert len(fitted.history_["loss"]) == 2
    assert [layer for layer in ("age", "gender") if fitted.model_.get_layer(layer)] == ["age", "gender"]


def test_score_is_mean_of_gender_accuracy_and_age_r2(fitted, tiny_data):
    X, y = tiny_data
    y_pred = fitted.predict(X)
    expected = 0.5 * (metrics.gender_accuracy(y, y_pred) + metrics.age_r2(y, y_pred))
    assert fitted.score(X, y) == pytest.approx(expected)


def test_same_random_state_same_predictions(fitted, tiny_data):
    X, y = tiny_data
    again = AgeGenderCNN(**TINY).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(again.predict(X), fitted.predict(X))


def test_pickle_round_trip_keeps_predictions(fitted, tiny_data):
    X, _ = tiny_data
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_allclose(restored.predict_proba(X), fitted.predict_proba(X), rtol=1e-6)
    np.testing.assert_allclose(restored.predict(X), fitted.predict(X), rtol=1e-6)
    assert restored.history_ == fitted.history_


def test_clone_copies_params_not_state(fitted):
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "model_")


def test_dataframe_target_and_3d_input(tiny_data):
    pd = pytest.importorskip("pandas")
    X, y = tiny_data
    frame = pd.DataFrame({"gender": y[:, 1], "age": y[:, 0]})  # column order must not matter
    est = AgeGenderCNN(**{**TINY, "epochs": 1}).fit(X[..., 0], frame)
    assert est.input_shape_ == (16, 16, 1)
    assert est.predict(X).shape == (len(X), 2)


def test_validation_split_is_shuffled_and_stratified(tiny_data):
    _, y = tiny_data
    est = AgeGenderCNN(validation_split=0.25)
    train, val = est._split(len(y), y[:, 1], seed=0)
    assert len(val) == 15 and len(train) == 45
    assert not np.array_equal(val, np.arange(45, 60))  # not Keras's "last rows"
    assert set(np.unique(y[val, 1])) == {0.0, 1.0}


def test_early_stopping_restores_best_and_stops(tiny_data):
    import keras

    class WeightsPerEpoch(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.weights = []

        def on_epoch_end(self, epoch, logs=None):
            self.weights.append(self.model.get_weights())

    X, y = tiny_data
    seen = WeightsPerEpoch()
    est = AgeGenderCNN(**{**TINY, "epochs": 30, "early_stopping": 1, "learning_rate": 0.5, "callbacks": [seen]})
    est.fit(X, y)
    assert est.n_epochs_ < 30 and len(seen.weights) == est.n_epochs_
    best = int(np.argmin(est.history_["val_loss"]))
    assert best < est.n_epochs_ - 1  # stopped after an epoch without improvement...
    for restored, kept in zip(est.model_.get_weights(), seen.weights[best], strict=True):
        np.testing.assert_array_equal(restored, kept)  # ...and went back to the best epoch's weights
    assert not all(np.array_equal(a, b) for a, b in zip(seen.weights[-1], seen.weights[best], strict=True))


def test_pipeline_from_files(tmp_path, tiny_data):
    from PIL import Image

    X, y = tiny_data
    paths = []
    for i, image in enumerate(X[:20]):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.repeat(image, 3, axis=2)).resize((40, 40)).save(path)
        paths.append(path)
    pipe = Pipeline([("preprocess", ImagePreprocessor(image_size=16)), ("model", AgeGenderCNN(**TINY))])
    pipe.fit(paths, y[:20])
    assert pipe.predict(paths).shape == (20, 2)
    assert pipe.predict_proba([str(p) for p in paths[:3]]).shape == (3, 2)


def test_grid_search_and_cross_val_score(tiny_data):
    X, y = tiny_data
    base = AgeGenderCNN(**{**TINY, "epochs": 1})
    search = GridSearchCV(
        base, {"dense_units": [4, 8]}, cv=2, scoring=metrics.SCORERS, refit="age_mae"
    ).fit(X, y)
    assert search.best_params_["dense_units"] in (4, 8)
    assert {"mean_test_age_mae", "mean_test_gender_accuracy", "mean_test_cs5", "mean_test_gender_roc_auc"} <= set(
        search.cv_results_
    )
    assert np.all(search.cv_results_["mean_test_age_mae"] <= 0)
    scores = cross_val_score(base, X, y, cv=2)
    assert scores.shape == (2,) and np.all(scores <= 1)


def test_uint8_float_and_list_inputs_predict_alike(fitted, tiny_data):
    X, _ = tiny_data  # uint8, as ImagePreprocessor returns
    expected = fitted.predict_proba(X)
    np.testing.assert_allclose(fitted.predict_proba(X.astype(np.float64)), expected, rtol=1e-6)
    np.testing.assert_allclose(fitted.predict_proba(X[:3].tolist()), expected[:3], rtol=1e-6)
    with pytest.raises(ValueError, match="0 sample"):
        fitted.predict(X[:0])


def test_not_fitted_error_says_what_to_do(tiny_data):
    X, y = tiny_data
    with pytest.raises(NotFittedEstimatorError, match=r"call fit\(X, y\) first"):
        AgeGenderCNN().predict(X)
    failed = AgeGenderCNN(**TINY)
    with pytest.raises(ValueError, match="ages >= 0"):
        failed.fit(X, -y)  # fails after X is validated (n_features_in_ set), before a network exists
    with pytest.raises(NotFittedError, match=r"call fit\(X, y\) first"):
        failed.predict(X)


def test_wrong_image_shape_at_predict(fitted):
    with pytest.raises(ValueError, match=r"fitted on \(16, 16, 1\).*ImagePreprocessor\(image_size=16"):
        fitted.predict(np.zeros((2, 32, 32, 1)))
    with pytest.raises(ValueError, match=r"fitted on \(16, 16, 1\).*ImagePreprocessor\(image_size=16"):
        fitted.predict(np.zeros((2, 32, 32, 1), dtype=np.uint8))  # the preprocessor's dtype takes a shorter path
    with pytest.raises(ValueError, match="5 dimensions"):
        fitted.predict(np.zeros((2, 16, 16, 1, 1)))


@pytest.mark.parametrize(
    "y, match",
    [
        (np.zeros(60), r"y must have shape \(n, 2\)"),
        (np.column_stack([np.full(60, -1.0), np.zeros(60)]), "ages >= 0"),
        (np.column_stack([np.full(60, 30.0), np.full(60, 2.0)]), r"0 \(male\) or 1 \(female\), found \[2.0\]"),
        (None, "requires y to be passed"),
    ],
)
def test_bad_targets(tiny_data, y, match):
    X, _ = tiny_data
    with pytest.raises(ValueError, match=match):
        AgeGenderCNN(**TINY).fit(X, y)


def test_dataframe_without_target_columns(tiny_data):
    pd = pytest.importorskip("pandas")
    X, y = tiny_data
    with pytest.raises(ValueError, match=r"columns 'age' and 'gender'; missing \['gender'\]"):
        AgeGenderCNN(**TINY).fit(X, pd.DataFrame({"age": y[:, 0], "sex": y[:, 1]}))


def test_nan_images_are_refused(tiny_data):
    X, y = tiny_data
    bad = X.astype(float)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        AgeGenderCNN(**TINY).fit(bad, y)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"epochs": 0}, r"'epochs' parameter of AgeGenderCNN must be an int in the range \[1, inf\)"),
        ({"epochs": 2.5}, r"'epochs' parameter of AgeGenderCNN must be an int"),
        ({"dropout": 1.0}, r"'dropout' parameter of AgeGenderCNN must be a float in the range \[0.0, 1.0\)"),
        ({"validation_split": -0.1}, r"'validation_split' parameter of AgeGenderCNN must be a float in the range"),
        ({"learning_rate": 0}, r"'learning_rate' parameter of AgeGenderCNN must be a float in the range \(0.0, inf\)"),
        ({"learning_rate": float("inf")}, "'learning_rate' parameter of AgeGenderCNN must be a float"),
        ({"age_loss_weight": -1.0}, "'age_loss_weight' parameter of AgeGenderCNN must be a float"),
        ({"early_stopping": 0}, r"'early_stopping' parameter of AgeGenderCNN must be an int in the range \[1, inf\) or None"),
        ({"filters": "32"}, "'filters' parameter of AgeGenderCNN must be an array-like"),
        ({"augment": "yes"}, "'augment' parameter of AgeGenderCNN must be an instance of 'bool'"),
        ({"callbacks": "progress"}, "'callbacks' parameter of AgeGenderCNN must be an instance of 'list'"),
    ],
)
def test_bad_params_are_reported_at_fit(tiny_data, params, match):
    X, y = tiny_data
    with pytest.raises(InvalidParameterError, match=match):
        AgeGenderCNN(**{**TINY, **params}).fit(X, y)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"filters": ()}, r"filters must be a non-empty tuple of positive ints, e.g. \(32, 64\), got \(\)"),
        ({"filters": (8, -1)}, r"filters must be a non-empty tuple of positive ints, e.g. \(32, 64\), got \(8, -1\)"),
        ({"filters": (8, 2.5)}, "filters must be a non-empty tuple of positive ints"),
        ({"zoom_tta": (0.1,)}, r"zoom_tta must be a tuple of at most 8 zoom factors between 0.5 and 2, e.g. \(1.075, 0.935\)"),
        ({"zoom_tta": (1.1, "x")}, "zoom_tta must be a tuple of at most 8 zoom factors between 0.5 and 2"),
        ({"zoom_tta": (1.1,) * 2000}, r"at most 8 zoom factors .*got \(1.1, 1.1, 1.1, 1.1, 1.1, 1.1, \.\.\.\)"),
        ({"bottleneck": 4, "architecture": "vgg_bn"},
         r"bottleneck applies to architecture='seed' only .*; set bottleneck=0 or architecture='seed'"),
    ],
)
def test_params_beyond_constraints_are_reported_at_fit(tiny_data, params, match):
    X, y = tiny_data
    with pytest.raises(ValueError, match=match):
        AgeGenderCNN(**{**TINY, **params}).fit(X, y)


def test_choice_constraints_come_from_the_modules_that_define_the_choices():
    from sklearn.utils._param_validation import StrOptions

    from skface.network.architecture import AGE_HEADS, ARCHITECTURES, PRECISIONS
    from skface.network.training import LR_SCHEDULES

    constraints = AgeGenderCNN._parameter_constraints
    for name, choices in [("architecture", ARCHITECTURES), ("age_head", AGE_HEADS), ("precision", PRECISIONS),
                          ("lr_schedule", LR_SCHEDULES)]:
        (options,) = constraints[name]
        assert isinstance(options, StrOptions) and options.options == set(choices)
    assert set(constraints) == set(AgeGenderCNN().get_params())


def test_every_network_param_reaches_the_builder_or_the_compiler():
    import inspect

    from skface.network.architecture import build_model
    from skface.network.training import compile_for_training

    used_by_fit_or_predict = {"flip_tta", "zoom_tta", "epochs", "batch_size", "validation_split", "early_stopping",
                              "random_state", "verbose", "callbacks", "warm_start"}
    taken = set(inspect.signature(build_model).parameters) | set(inspect.signature(compile_for_training).parameters)
    assert set(AgeGenderCNN().get_params()) - used_by_fit_or_predict <= taken
    assert not used_by_fit_or_predict & taken


def test_build_model_returns_an_uncompiled_network_and_fit_compiles_it(fitted):
    from skface.network.architecture import build_model

    assert not build_model((16, 16, 1), filters=(4,), dense_units=4).compiled
    assert fitted.model_.compiled and fitted.model_.loss["age"] == "mae"


def test_score_rejects_sample_weight(fitted, tiny_data):
    X, y = tiny_data
    with pytest.raises(ValueError, match="sample_weight"):
        fitted.score(X, y, sample_weight=np.ones(len(y)))


def test_predict_leaves_the_estimator_as_it_was(fitted, tiny_data):
    X, _ = tiny_data
    before = dict(fitted.__dict__)
    fitted.set_params(flip_tta=True)
    try:
        fitted.predict(X[:3])
    finally:
        fitted.set_params(flip_tta=False)
    fitted.predict_proba(X[:3])
    assert fitted.__dict__.keys() == before.keys()
    assert all(fitted.__dict__[name] is value for name, value in before.items())


def test_compiled_forward_is_cached_per_model_and_goes_with_it():
    import gc
    import weakref

    from skface.network import inference
    from skface.network.architecture import build_model

    model = build_model((8, 8, 1), filters=(2,), dense_units=2)
    images = np.zeros((3, 8, 8, 1), dtype=np.float32)
    first = inference.compiled_forward(model, (8, 8, 1), (), False)
    assert inference.compiled_forward(model, (8, 8, 1), (), False) is first
    assert inference.compiled_forward(model, (8, 8, 1), (), True) is not first
    age, p_female, spread = inference.predict_outputs(model, images)
    assert age.shape == p_female.shape == spread.shape == (3,)
    assert model in inference._FORWARD_CACHE
    entries, alive = len(inference._FORWARD_CACHE), weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None  # the cache does not keep a model alive...
    assert len(inference._FORWARD_CACHE) < entries  # ...and its entry goes with it


def test_predict_with_proba_is_predict_and_predict_proba_in_one_pass(fitted, tiny_data):
    X, _ = tiny_data
    y_pred, proba = fitted.predict_with_proba(X)
    np.testing.assert_array_equal(y_pred, fitted.predict(X))
    np.testing.assert_array_equal(proba, fitted.predict_proba(X))


def test_warm_start_goes_on_training_the_fitted_network(tiny_data):
    X, y = tiny_data
    est = AgeGenderCNN(**{**TINY, "epochs": 1}).fit(X, y)
    network, before = est.model_, est.predict(X)
    # A learning rate of almost nothing: the warm fit starts where the first one ended, so its answers stay.
    est.set_params(warm_start=True, learning_rate=1e-12).fit(X, y)
    assert est.model_ is network
    np.testing.assert_allclose(est.predict(X), before, atol=1e-3)
    cold = clone(est).set_params(warm_start=False).fit(X, y)  # the same fit from a new network answers otherwise
    assert not np.allclose(cold.predict(X)[:, 0], before[:, 0], atol=1e-3)


def test_warm_start_drops_the_calibration_and_fits_a_new_one_on_request(tiny_data):
    X, y = tiny_data
    est = AgeGenderCNN(**{**TINY, "age_head": "dex"}).fit(X, y).conformalize(X[:30], y[:30])
    est.set_params(warm_start=True, epochs=1).fit(X, y)
    assert not est.is_conformalized()


def test_warm_start_refuses_another_network_or_image_shape_and_keeps_the_model(tiny_data):
    X, y = tiny_data
    est = AgeGenderCNN(**{**TINY, "epochs": 1}).fit(X, y).conformalize(X[:30], y[:30])
    before = est.predict(X)
    est.set_params(warm_start=True, filters=(4, 16))
    with pytest.raises(ValueError, match=r"parameters that shape it .* describe another one; set them back"):
        est.fit(X, y)
    est.set_params(filters=TINY["filters"])
    with pytest.raises(ValueError, match=r"whose images are \(16, 16, 1\).*got images of \(8, 8, 1\)"):
        est.fit(X[:, :8, :8], y)
    assert est.is_conformalized()  # nothing was lost
    np.testing.assert_array_equal(est.predict(X), before)
