"""Age ranges with their coverage, and gender probabilities that mean what they say (issue 20)."""

import numpy as np
import pytest

from skface import AgeGenderCNN, load_pretrained, make_synthetic_faces, save_pretrained
from skface.evaluation import evaluate
from skface.exceptions import NotFittedEstimatorError
from skface.metrics import gender_calibration_error
from skface.network.calibration import (
    age_interval,
    conformal_quantile,
    conformity_scores,
    fit_temperature,
    half_widths,
    temper,
)
from skface.network.pipeline import make_pipeline, predict_rows
from skface.plots import gender_reliability


def test_split_conformal_ranges_cover_the_stated_share_of_new_faces():
    rng = np.random.default_rng(0)
    spread = rng.uniform(1, 10, 6000)  # some faces much surer than others
    truth = rng.uniform(0, 90, 6000)
    predicted = truth + rng.normal(0, spread)
    calibration, test = slice(0, 2000), slice(2000, None)
    scores = conformity_scores(truth[calibration], predicted[calibration], spread[calibration])
    for level in (0.5, 0.8, 0.9):
        ranges = age_interval(predicted[test], spread[test], half_widths(scores, predicted[test], level))
        inside = (truth[test] >= ranges[:, 0]) & (truth[test] <= ranges[:, 1])
        assert abs(inside.mean() - level) < 0.025, level
        # Normalised by the spread: the sure faces get narrow ranges, and are covered as often.
        sure = spread[test] < 3
        assert abs(inside[sure].mean() - level) < 0.05
        assert np.median(np.diff(ranges[sure], axis=1)) < np.median(np.diff(ranges[~sure], axis=1))


def test_every_band_of_predicted_age_gets_its_share():
    """Children's errors are small against their spread, older people's large: one quantile for all would
    over-cover the first and under-cover the second; one per band of predicted age covers each."""
    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 90, 8000)
    spread = np.full(8000, 3.0)
    predicted = truth + rng.normal(0, np.where(truth < 13, 1.0, 6.0))
    calibration, test = slice(0, 3000), slice(3000, None)
    scores = conformity_scores(truth[calibration], predicted[calibration], spread[calibration])
    assert set(scores) >= {"all", "0-2", "3-12", "20-39", "60plus"}
    ranges = age_interval(predicted[test], spread[test], half_widths(scores, predicted[test], 0.8))
    inside = (truth[test] >= ranges[:, 0]) & (truth[test] <= ranges[:, 1])
    for low, high in ((3, 12), (20, 39), (60, 90)):
        band = (predicted[test] >= low) & (predicted[test] < high + 1)
        assert abs(inside[band].mean() - 0.8) < 0.05, (low, high)
    # A band with too few calibration faces for the level falls back on all faces' quantile.
    few = {"all": np.sort(rng.random(100)), "0-2": np.array([5.0, 6.0])}
    assert half_widths(few, np.array([1.0, 30.0]), 0.8).tolist() == [conformal_quantile(few["all"], 0.8)] * 2


def test_ranges_never_go_below_zero():
    ranges = age_interval(np.array([1.0, 30.0]), np.array([2.0, 2.0]), 3.0)
    assert ranges[0, 0] == 0 and ranges[0, 1] == pytest.approx(7.0)
    assert ranges[1].tolist() == pytest.approx([24.0, 36.0])


@pytest.mark.parametrize("level, message", [(1.0, "between 0 and 1"), (0, "between 0 and 1"),
                                            ("0.8", "between 0 and 1"), (0.99, "needs at least 99 calibration")])
def test_confidence_levels_that_cannot_be_honoured_are_refused(level, message):
    with pytest.raises(ValueError, match=message):
        conformal_quantile(np.arange(20.0), level)


def test_temperature_scaling_recovers_an_overconfident_network():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, 20000)
    gender = (rng.random(20000) < 1 / (1 + np.exp(-logits / 2.5))).astype(float)  # truth is 2.5x softer
    p_stated = 1 / (1 + np.exp(-logits))
    temperature = fit_temperature(gender, p_stated)
    assert temperature == pytest.approx(2.5, rel=0.1)
    y = np.column_stack([np.zeros_like(gender), gender])
    before = gender_calibration_error(y, np.column_stack([1 - p_stated, p_stated]))
    tempered = temper(p_stated, temperature)
    after = gender_calibration_error(y, np.column_stack([1 - tempered, tempered]))
    assert before > 0.05 and after < 0.02
    # Tempering never changes which gender is predicted.
    assert np.array_equal(tempered >= 0.5, p_stated >= 0.5)
    assert temper(temper(p_stated, 2.5), 1 / 2.5) == pytest.approx(p_stated)


@pytest.fixture(scope="module")
def calibrated():
    X, y = make_synthetic_faces(260, image_size=24, random_state=0)
    estimator = AgeGenderCNN(filters=(4, 8), dense_units=8, epochs=2, batch_size=32, age_head="dex", verbose=0,
                             random_state=0, flip_tta=True)
    estimator.fit(X[:160], y[:160]).conformalize(X[160:220], y[160:220])
    return estimator, X[220:], y[220:]


def test_predict_interval_brackets_the_predicted_age(calibrated):
    estimator, X, _ = calibrated
    ranges = estimator.predict_interval(X, confidence_level=0.8)
    age = estimator.predict(X)[:, 0]
    assert ranges.shape == (len(X), 2)
    assert np.all(ranges[:, 0] >= 0) and np.all(ranges[:, 0] <= age) and np.all(age <= ranges[:, 1])
    wider = estimator.predict_interval(X, confidence_level=0.95)
    assert np.all(wider[:, 1] - wider[:, 0] >= ranges[:, 1] - ranges[:, 0] - 1e-9)
    y_pred, proba, same = estimator.predict_with_interval(X, 0.8)
    assert np.allclose(same, ranges) and np.allclose(y_pred, estimator.predict(X))
    assert np.allclose(proba, estimator.predict_proba(X))


def test_calibration_survives_saving_and_a_refit_drops_it(calibrated, tmp_path):
    estimator, X, y = calibrated
    save_pretrained(make_pipeline(estimator, image_size=24, color="grayscale", faces=False), tmp_path)
    loaded = load_pretrained(tmp_path)[-1]
    assert loaded.gender_temperature_ == pytest.approx(estimator.gender_temperature_)
    assert np.allclose(loaded.predict_interval(X), estimator.predict_interval(X), atol=1e-3)
    assert np.allclose(loaded.predict_proba(X), estimator.predict_proba(X), atol=1e-6)
    loaded.set_params(epochs=1).fit(X, y)
    assert not loaded.is_conformalized()
    with pytest.raises(NotFittedEstimatorError, match=r"conformalize\(X_calibration, y_calibration\)"):
        loaded.predict_interval(X)


def test_uncalibrated_model_answers_without_ranges(tiny_data, calibrated):
    X, y = tiny_data
    plain = AgeGenderCNN(filters=(4,), dense_units=4, epochs=1, verbose=0, random_state=0).fit(X, y)
    rows = predict_rows(make_pipeline(plain, image_size=16, color="grayscale", faces=False), list(X[:2]))
    assert rows[0]["age_low"] is None and rows[0]["age_high"] is None and rows[0]["age"] is not None
    estimator, X_cal, _ = calibrated
    rows = predict_rows(make_pipeline(estimator, image_size=24, color="grayscale", faces=False), list(X_cal[:2]))
    expected = estimator.predict_interval(X_cal[:2])
    assert np.allclose([[row["age_low"], row["age_high"]] for row in rows], expected)
    assert rows[0]["faces"][0]["age_low"] == rows[0]["age_low"]


def test_conformalize_checks_its_targets(calibrated):
    estimator, X, y = calibrated
    with pytest.raises(ValueError, match="one \\[age, gender\\] row per image"):
        estimator.conformalize(X, y[:3])


def test_evaluation_reports_groups_ranges_and_calibration():
    y_true = np.array([[1, 0], [30, 1], [45, 0], [70, 1]], dtype=float)
    y_pred = np.array([[2, 0], [33, 1], [40, 1], [60, 1]], dtype=float)
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.1, 0.9]])
    ranges = np.array([[0, 4], [28, 34], [41, 50], [50, 65]], dtype=float)
    figures = evaluate(y_true, y_pred, proba, race=np.array([0, 1, 0, 2]), intervals=ranges)
    assert figures["interval_coverage"] == 0.75 and figures["interval_width"] == pytest.approx(7.5)
    assert figures["interval_coverage_0-2"] == 1 and figures["interval_coverage_60plus"] == 0
    assert figures["n_white"] == 2 and figures["age_mae_white"] == pytest.approx(3.0)
    assert figures["gender_accuracy_male"] == 0.5 and figures["n_female"] == 2
    assert "n_indian" not in figures
    # Confidence 0.9, 0.8, 0.6, 0.9 against right, right, wrong, right.
    assert figures["gender_ece"] == pytest.approx(abs(1 - 0.9) * 0.5 + abs(1 - 0.8) * 0.25 + abs(0 - 0.6) * 0.25)


def test_reliability_plot_draws_before_and_after():
    rng = np.random.default_rng(0)
    p = rng.random(200)
    y = np.column_stack([np.zeros(200), (rng.random(200) < p).astype(float)])
    figure = gender_reliability(y, np.column_stack([1 - p, p]), before=np.column_stack([1 - p**2, p**2]))
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert any(label.startswith("before calibration (ECE") for label in labels)
    assert any(label.startswith("after calibration (ECE") for label in labels)
