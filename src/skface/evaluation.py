"""Held-out evaluation: the figures every entry point reports, overall and per age band."""

from __future__ import annotations

import numpy as np

from . import metrics

#: Age bands, in years, used for per-band figures: (label, lowest age, highest age).
AGE_BANDS = (
    ("0-2", 0, 2),
    ("3-12", 3, 12),
    ("13-19", 13, 19),
    ("20-39", 20, 39),
    ("40-59", 40, 59),
    ("60plus", 60, np.inf),
)

#: UTKFace's race codes and the names that figures per group carry.
RACES = {0: "white", 1: "black", 2: "asian", 3: "indian", 4: "others"}


def age_band(ages) -> np.ndarray:
    """Label of the age band of each age (see :data:`AGE_BANDS`)."""
    ages = np.asarray(ages, dtype=np.float64)
    labels = np.empty(ages.shape, dtype=object)
    for label, low, high in AGE_BANDS:
        labels[(ages >= low) & (ages < high + 1)] = label
    return labels


def evaluate(y_true, y_pred, proba=None, *, race=None, intervals=None) -> dict[str, float]:
    """All held-out figures of ``[age, gender]`` predictions.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n, 2)
        True and predicted ``[age, gender]``.
    proba : array-like of shape (n, 2), optional
        ``[P(male), P(female)]``, for the gender ROC AUC and calibration error.
    race : array-like of shape (n,), optional
        UTKFace's race code of each face (0-4, see :data:`RACES`), for the
        figures per race group.
    intervals : array-like of shape (n, 2), optional
        ``[low, high]`` age ranges (:meth:`AgeGenderCNN.predict_interval`),
        for their coverage and width.

    Returns
    -------
    figures : dict of str to float
        ``age_mae``, ``cs5``, ``gender_accuracy``, ``score`` (mean of gender
        accuracy and age R^2), ``n``; ``gender_roc_auc`` and ``gender_ece``
        (expected calibration error) when ``proba`` is given and both genders
        are present; ``interval_coverage`` (share of true ages inside) and
        ``interval_width`` (median width, years) with ``intervals``. The same
        figures per group, named ``<figure>_<group>`` with ``n_<group>``:
        per age band (:data:`AGE_BANDS`), per gender (``male``, ``female``)
        and per race group (``white``, ...) when ``race`` is given.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    figures = {
        "n": float(len(y_true)),
        "age_mae": metrics.age_mae(y_true, y_pred),
        "cs5": metrics.cumulative_score(y_true, y_pred, years=5),
        "gender_accuracy": metrics.gender_accuracy(y_true, y_pred),
        "score": metrics.combined_score(y_true, y_pred) if len(y_true) > 1 else float("nan"),
    }
    if proba is not None and len(np.unique(y_true[:, 1])) == 2:
        figures["gender_roc_auc"] = metrics.gender_roc_auc(y_true, proba)
        figures["gender_ece"] = metrics.gender_calibration_error(y_true, proba)
    if intervals is not None:
        intervals = np.asarray(intervals, dtype=np.float64)
        inside = (y_true[:, 0] >= intervals[:, 0]) & (y_true[:, 0] <= intervals[:, 1])
        width = intervals[:, 1] - intervals[:, 0]
        figures.update(interval_coverage=float(inside.mean()), interval_width=float(np.median(width)))
    groups = [(label, age_band(y_true[:, 0]) == label) for label, _, _ in AGE_BANDS]
    groups += [("male", y_true[:, 1] == 0), ("female", y_true[:, 1] == 1)]
    if race is not None:
        race = np.asarray(race)
        groups += [(name, race == code) for code, name in RACES.items()]
    for label, mask in groups:
        if mask.any():
            figures[f"age_mae_{label}"] = metrics.age_mae(y_true[mask], y_pred[mask])
            figures[f"gender_accuracy_{label}"] = metrics.gender_accuracy(y_true[mask], y_pred[mask])
            figures[f"n_{label}"] = float(mask.sum())
            if intervals is not None:
                figures[f"interval_coverage_{label}"] = float(inside[mask].mean())
                figures[f"interval_width_{label}"] = float(np.median(width[mask]))
    return figures


def stratified_split(X, y, *, test_size: float = 0.2, random_state: int | None = 0):
    """Split ``X, y`` into train and test, stratified by age band and gender.

    Strata too small to split fall back to stratifying by gender, then to a
    plain shuffled split.

    Returns
    -------
    X_train, X_test, y_train, y_test
    """
    from sklearn.model_selection import train_test_split

    y = np.asarray(y, dtype=np.float64)
    strata = np.char.add(age_band(y[:, 0]).astype(str), y[:, 1].astype(int).astype(str))
    for stratify in (strata, y[:, 1], None):
        if stratify is None:
            break
        _, counts = np.unique(stratify, return_counts=True)
        n_test = int(np.ceil(test_size * len(y)))
        if counts.min() >= 2 and n_test >= len(counts) and len(y) - n_test >= len(counts):
            break
    return train_test_split(X, y, test_size=test_size, random_state=random_state, stratify=stratify)
