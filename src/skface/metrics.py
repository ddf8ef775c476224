"""Metrics and scorers for ``[age, gender]`` predictions.

Every function takes ``y_true`` and ``y_pred`` of shape ``(n, 2)`` with
columns ``[age, gender]``, as :meth:`skface.AgeGenderCNN.predict` returns
them. The scorers plug into scikit-learn's model selection::

    GridSearchCV(AgeGenderCNN(), grid, scoring=skface.metrics.SCORERS, refit="age_mae")
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, make_scorer, r2_score, roc_auc_score


def _columns(y, name: str) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(y, "columns") and {"age", "gender"} <= set(y.columns):
        y = y[["age", "gender"]]
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != 2:
        raise ValueError(f"{name} must have shape (n, 2) with columns [age, gender], got shape {y.shape}.")
    return y[:, 0], y[:, 1]


def age_mae(y_true, y_pred) -> float:
    """Mean absolute error of the age, in years (lower is better)."""
    age_true, _ = _columns(y_true, "y_true")
    age_pred, _ = _columns(y_pred, "y_pred")
    return float(np.mean(np.abs(age_true - age_pred)))


def age_r2(y_true, y_pred) -> float:
    """Coefficient of determination R^2 of the age (higher is better, at most 1)."""
    age_true, _ = _columns(y_true, "y_true")
    age_pred, _ = _columns(y_pred, "y_pred")
    return float(r2_score(age_true, age_pred))


def cumulative_score(y_true, y_pred, *, years: float = 5.0) -> float:
    """Share of faces whose predicted age is within ``years`` of the truth (CS@years)."""
    age_true, _ = _columns(y_true, "y_true")
    age_pred, _ = _columns(y_pred, "y_pred")
    return float(np.mean(np.abs(age_true - age_pred) <= years))


def gender_accuracy(y_true, y_pred) -> float:
    """Share of faces whose gender is predicted right (higher is better)."""
    _, gender_true = _columns(y_true, "y_true")
    _, gender_pred = _columns(y_pred, "y_pred")
    return float(accuracy_score(gender_true, gender_pred))


def gender_roc_auc(y_true, proba) -> float:
    """ROC AUC of the gender, from ``predict_proba``'s ``[P(male), P(female)]``."""
    _, gender_true = _columns(y_true, "y_true")
    _, p_female = _columns(proba, "proba")
    return float(roc_auc_score(gender_true, p_female))


def gender_calibration_error(y_true, proba, *, n_bins: int = 15) -> float:
    """Expected calibration error of the gender probability: how far the stated probability is from the accuracy.

    Faces are binned by the probability of their predicted gender (``n_bins``
    equal-width bins over 0.5-1); the error is the mean, weighted by the
    faces in each bin, of ``|accuracy - mean probability|`` (Guo et al.
    2017). 0 is perfectly calibrated.
    """
    _, gender_true = _columns(y_true, "y_true")
    _, p_female = _columns(proba, "proba")
    confidence, correct = reliability_table(gender_true, p_female)
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1]), 0, n_bins - 1)
    error = 0.0
    for b in np.unique(bins):
        mask = bins == b
        error += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(error)


def reliability_table(gender_true, p_female) -> tuple[np.ndarray, np.ndarray]:
    """Per face, the probability of its predicted gender and whether the prediction is right (0/1)."""
    p_female = np.asarray(p_female, dtype=np.float64)
    predicted = (p_female >= 0.5).astype(np.float64)
    return np.where(predicted == 1, p_female, 1.0 - p_female), (predicted == np.asarray(gender_true)).astype(float)


def combined_score(y_true, y_pred) -> float:
    """Mean of gender accuracy and age R^2: the figure ``AgeGenderCNN.score`` returns."""
    return 0.5 * (gender_accuracy(y_true, y_pred) + age_r2(y_true, y_pred))


#: Scorer for the negated age MAE (scikit-learn scorers are "higher is better").
neg_age_mae_scorer = make_scorer(age_mae, greater_is_better=False)
#: Scorer for the gender accuracy.
gender_accuracy_scorer = make_scorer(gender_accuracy)
#: Scorer for CS@5: the share of ages within 5 years.
cs5_scorer = make_scorer(cumulative_score, years=5.0)
#: Scorer for the gender ROC AUC, from ``predict_proba``.
gender_roc_auc_scorer = make_scorer(gender_roc_auc, response_method="predict_proba")

#: The named scorers, ready for ``GridSearchCV(scoring=SCORERS, refit=...)``.
SCORERS = {
    "age_mae": neg_age_mae_scorer,
    "gender_accuracy": gender_accuracy_scorer,
    "cs5": cs5_scorer,
    "gender_roc_auc": gender_roc_auc_scorer,
}
