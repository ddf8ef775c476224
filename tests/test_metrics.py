import numpy as np
import pytest

from skface import metrics

Y_TRUE = np.array([[10.0, 0], [20.0, 1], [30.0, 1], [40.0, 0]])
Y_PRED = np.array([[12.0, 0], [20.0, 0], [37.0, 1], [40.0, 0]])


def test_age_mae_cs5_and_gender_accuracy():
    assert metrics.age_mae(Y_TRUE, Y_PRED) == pytest.approx((2 + 0 + 7 + 0) / 4)
    assert metrics.cumulative_score(Y_TRUE, Y_PRED) == pytest.approx(0.75)
    assert metrics.cumulative_score(Y_TRUE, Y_PRED, years=1) == pytest.approx(0.5)
    assert metrics.gender_accuracy(Y_TRUE, Y_PRED) == pytest.approx(0.75)


def test_roc_auc_from_probabilities():
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    assert metrics.gender_roc_auc(Y_TRUE, proba) == pytest.approx(1.0)


def test_combined_score_of_perfect_predictions_is_one():
    assert metrics.combined_score(Y_TRUE, Y_TRUE) == pytest.approx(1.0)


def test_dataframe_targets_are_read_by_column_name():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"gender": Y_TRUE[:, 1], "age": Y_TRUE[:, 0]})
    assert metrics.age_mae(frame, Y_PRED) == metrics.age_mae(Y_TRUE, Y_PRED)


def test_wrong_shape_is_named():
    with pytest.raises(ValueError, match=r"y_pred must have shape \(n, 2\).*got shape \(4,\)"):
        metrics.age_mae(Y_TRUE, Y_PRED[:, 0])


def test_scorers_are_named_and_signed():
    assert set(metrics.SCORERS) == {"age_mae", "gender_accuracy", "cs5", "gender_roc_auc"}
    assert metrics.SCORERS["age_mae"]._sign == -1
