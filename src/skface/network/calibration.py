"""Calibration on faces the network did not train on: a conformal age range and a tempered gender probability.

The age range is split conformal prediction, normalised by the spread of the
age estimate (the standard deviation of the ``"dex"`` head's distribution,
1 for the regression head): a face's conformity score is
``|true age - predicted age| / spread``, and the range at confidence level
``c`` is ``predicted age -/+ q * spread`` with ``q`` the
``ceil((n + 1) c)``-th smallest of the ``n`` calibration scores. On
exchangeable faces at least a share ``c`` of true ages fall inside (Lei et
al. 2018, "Distribution-free predictive inference for regression"; as
MAPIE's ``SplitConformalRegressor`` with a normalised score). The spread
makes the range narrow where the network is sure (children) and wide where
it is not; to give every age band its share, not only all faces together,
the scores are also kept per band of the *predicted* age (Mondrian conformal
prediction, Vovk et al. 2005), and a face gets its predicted band's ``q``
(all faces' when its band has too few calibration faces for the level).

The gender probability is tempered: ``P(female) = sigmoid(logit / T)`` with
the temperature ``T`` that minimises the log loss on the calibration faces
(Guo et al. 2017, "On calibration of modern neural networks").
"""

from __future__ import annotations

import numpy as np

# Spreads below this (a near one-hot age distribution) are raised to it, so that no score divides by zero.
MIN_SPREAD = 0.5
# Temperatures searched, on a log scale.
TEMPERATURE_RANGE = (0.05, 20.0)
_EPS = 1e-7


# The key of all calibration faces' scores, beside one per band of predicted age.
ALL_FACES = "all"


def conformity_scores(age_true, age_pred, spread) -> dict[str, np.ndarray]:
    """Sorted normalised residuals ``|age_true - age_pred| / spread`` of the calibration faces: of all of them
    (:data:`ALL_FACES`) and of each band of predicted age (:data:`skface.evaluation.AGE_BANDS`) that has any."""
    from ..evaluation import age_band

    spread = np.maximum(np.asarray(spread, dtype=np.float64), MIN_SPREAD)
    scores = np.abs(np.asarray(age_true, dtype=np.float64) - np.asarray(age_pred, dtype=np.float64)) / spread
    bands = age_band(np.maximum(np.asarray(age_pred, dtype=np.float64), 0.0))
    out = {ALL_FACES: np.sort(scores)}
    out.update({str(band): np.sort(scores[bands == band]) for band in np.unique(bands)})
    return out


def half_widths(scores: dict, age_pred, confidence_level: float) -> np.ndarray:
    """Each face's ``q``: the quantile of its predicted age band's scores, else of all faces' scores."""
    from ..evaluation import age_band

    overall = conformal_quantile(scores[ALL_FACES], confidence_level)
    bands = age_band(np.maximum(np.asarray(age_pred, dtype=np.float64), 0.0))
    out = np.full(len(bands), overall)
    for band in np.unique(bands):
        if str(band) in scores and len(scores[str(band)]) >= _needed(confidence_level):
            out[bands == band] = conformal_quantile(scores[str(band)], confidence_level)
    return out


def _needed(confidence_level: float) -> int:
    """Fewest scores that give a quantile at this level: ``(n + 1) c <= n``."""
    return int(np.ceil(confidence_level / (1 - confidence_level) - 1e-9))


def conformal_quantile(scores, confidence_level: float) -> float:
    """The ``ceil((n + 1) c)``-th smallest score: the half-width, in spreads, of a range at level ``c``.

    Raises
    ------
    ValueError
        If ``confidence_level`` is not in (0, 1), or too high for the number
        of calibration faces (``(n + 1) c > n``).
    """
    if not isinstance(confidence_level, (float, int)) or isinstance(confidence_level, bool) \
            or not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must be a share between 0 and 1 (exclusive), e.g. 0.8; "
                         f"got {confidence_level!r}.")
    scores = np.asarray(scores, dtype=np.float64)
    rank = int(np.ceil((len(scores) + 1) * confidence_level))
    if rank > len(scores):
        raise ValueError(
            f"confidence_level={confidence_level} needs at least {_needed(confidence_level)} calibration faces, this "
            f"model was calibrated on {len(scores)}; lower it, or conformalize on more faces."
        )
    return float(scores[rank - 1])


def age_interval(age, spread, half_width) -> np.ndarray:
    """``[low, high]`` per face: ``age -/+ half_width * spread`` (``half_width`` one for all or one per face),
    the low end at least 0."""
    spread = np.maximum(np.asarray(spread, dtype=np.float64), MIN_SPREAD)
    age = np.asarray(age, dtype=np.float64)
    return np.column_stack([np.maximum(age - half_width * spread, 0.0), age + half_width * spread])


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def temper(p_female, temperature: float) -> np.ndarray:
    """``sigmoid(logit(p_female) / temperature)``: above 1 softens the probabilities, below 1 sharpens them."""
    if temperature == 1.0:
        return np.asarray(p_female, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-_logit(p_female) / temperature))


def fit_temperature(gender_true, p_female) -> float:
    """The temperature that minimises the log loss of :func:`temper` ``(p_female)`` against ``gender_true``."""
    from scipy.optimize import minimize_scalar

    logit = _logit(p_female)
    y = np.asarray(gender_true, dtype=np.float64)

    def log_loss(log_temperature):
        z = logit / np.exp(log_temperature)
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    low, high = np.log(TEMPERATURE_RANGE)
    return float(np.exp(minimize_scalar(log_loss, bounds=(low, high), method="bounded").x))
