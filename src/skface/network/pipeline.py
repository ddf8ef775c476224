"""The standard pipeline, ``ImagePreprocessor`` then ``AgeGenderCNN``: building and training it, and its per-row answers.

Every entry point goes through these: ``skface train`` and the MLflow
recipes build and train the pipeline with :func:`train_pipeline`; the served
model, ``skface predict`` and evaluation answer with :func:`predict_rows`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.pipeline import Pipeline

from ..data.preprocessing import ImagePreprocessor
from ..exceptions import ImageDecodeError
from .estimator import AgeGenderCNN

#: The fields of one answer, the same for the served model, ``skface predict`` and evaluation.
ROW_FIELDS = ("age", "gender", "gender_probability", "error")


def make_pipeline(estimator: AgeGenderCNN, *, image_size: int, color: str) -> Pipeline:
    """``Pipeline([("preprocess", ImagePreprocessor(...)), ("model", estimator)])``.

    Parameters
    ----------
    estimator : AgeGenderCNN
        Fitted or not.
    image_size : int
        Side of the square images the estimator reads.
    color : {"grayscale", "rgb"}
        Their colour.

    Returns
    -------
    pipeline : Pipeline
    """
    return Pipeline([("preprocess", ImagePreprocessor(image_size=image_size, color=color)), ("model", estimator)])


def train_pipeline(X_train, y_train, params: dict, *, image_size: int, color: str, seed: int,
                   verbose: int = 1, callbacks: list | None = None) -> tuple[Pipeline, float]:
    """Fit ``AgeGenderCNN(**params)`` on a training split and wrap it in the standard pipeline.

    Parameters
    ----------
    X_train : ndarray of shape (n, image_size, image_size, c)
        Training images, as :class:`ImagePreprocessor` makes them.
    y_train : ndarray of shape (n, 2)
        ``[age, gender]`` per image.
    params : dict
        AgeGenderCNN's hyperparameters.
    image_size, color
        Those of the images, kept in the pipeline's preprocessor.
    seed : int
        ``random_state`` of the estimator.
    verbose : int, default=1
        The estimator's progress bar.
    callbacks : list, optional
        Extra Keras callbacks.

    Returns
    -------
    pipeline : Pipeline
        The fitted standard pipeline.
    seconds : float
        Wall-clock time of the fit.
    """
    estimator = AgeGenderCNN(**params, random_state=seed, verbose=verbose, callbacks=callbacks)
    start = time.perf_counter()
    estimator.fit(X_train, y_train)
    return make_pipeline(estimator, image_size=image_size, color=color), time.perf_counter() - start


def predict_rows(pipeline: Pipeline, items: Sequence, *, read: Callable | None = None,
                 batch_size: int = 256) -> list[dict]:
    """One answer per item, where an item that cannot be read gets an error instead of failing the others.

    Parameters
    ----------
    pipeline : Pipeline
        A fitted pipeline whose last step is an :class:`AgeGenderCNN` and
        whose other steps turn one item into one image (the standard
        pipeline's :class:`ImagePreprocessor`).
    items : sequence
        File paths, encoded bytes, PIL images or arrays; or whatever ``read``
        turns into one of those.
    read : callable, optional
        Applied to each item first (the served model decodes base64 text);
        an :class:`ImageDecodeError` it raises becomes that row's error.
    batch_size : int, default=256
        Images decoded and predicted at a time: bounds the memory of a long
        sequence.

    Returns
    -------
    rows : list of dict
        One per item, with :data:`ROW_FIELDS`: ``age`` (years), ``gender``
        (``"male"`` or ``"female"``), ``gender_probability`` (the probability
        of the predicted gender) and ``error`` (empty when the item was read;
        else why not, and the predictions are None).
    """
    preprocess, model = pipeline[:-1], pipeline[-1]
    rows = []
    for start in range(0, len(items), batch_size):
        chunk = [{"age": None, "gender": None, "gender_probability": None, "error": ""}
                 for _ in items[start:start + batch_size]]
        images, good = [], []
        for row, item in zip(chunk, items[start:start + batch_size]):
            try:
                images.append(preprocess.transform([read(item) if read is not None else item])[0])
                good.append(row)
            except ImageDecodeError as exc:
                # The preprocessor names the item's index in its one-item batch; the row is the item.
                row["error"] = str(exc.__cause__ if isinstance(exc.__cause__, ImageDecodeError) else exc)
        if good:
            y_pred, proba = model.predict_with_proba(np.stack(images))
            for row, (age, gender), p_female in zip(good, y_pred, proba[:, 1]):
                is_female = gender == 1
                row.update(age=float(age), gender="female" if is_female else "male",
                           gender_probability=float(p_female if is_female else 1.0 - p_female))
        rows.extend(chunk)
    return rows
