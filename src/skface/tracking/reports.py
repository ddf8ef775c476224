"""What an evaluation logs: figures, plots and per-image predictions of a model on held-out faces."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from ..evaluation import evaluate

#: Params, tags and metrics are named the same in every entry point, so that
#: the MLflow UI's compare view lines them up.
TEST_PREFIX = "test_"


def log_evaluation(pipeline, images: np.ndarray, y_true: np.ndarray, *, history: dict | None = None,
                   filenames=None, race=None, prefix: str = TEST_PREFIX) -> dict[str, float]:
    """Evaluate on held-out images; log the figures, plots and per-image predictions.

    The figures are :func:`skface.evaluation.evaluate`'s: per age band, per
    gender and, with ``race`` (UTKFace's codes; -1 unknown), per race group;
    with the coverage and width of the 80% age ranges when the model is
    calibrated. Returns the figures, with ``prefix`` on their names as logged.
    """
    from .. import plots
    from ..network.pipeline import held_out_answers

    estimator = pipeline.steps[-1][1]
    y_pred, proba, intervals = held_out_answers(estimator, images)
    figures = {f"{prefix}{name}": value
               for name, value in evaluate(y_true, y_pred, proba, race=race, intervals=intervals).items()}
    mlflow.log_metrics(figures)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        drawn = {
            "age_predicted_vs_true.png": plots.predicted_vs_true_age(y_true, y_pred),
            "error_by_age_band.png": plots.error_by_age_band(y_true, y_pred),
            "gender_confusion_matrix.png": plots.gender_confusion_matrix(y_true, y_pred),
            "test_faces.png": plots.face_grid(images, y_true, y_pred),
        }
        if len(np.unique(y_true[:, 1])) == 2:
            before = None
            if estimator.is_conformalized():  # the untempered probabilities, beside
                from ..network.calibration import temper

                p_female = temper(proba[:, 1], 1.0 / estimator.gender_temperature_)
                before = np.column_stack([1.0 - p_female, p_female])
            drawn["gender_reliability.png"] = plots.gender_reliability(y_true, proba, before=before)
        if history:
            drawn["learning_curves.png"] = plots.learning_curves(history)
        for name, figure in drawn.items():
            figure.savefig(out / name, dpi=100, bbox_inches="tight")
        table = pd.DataFrame(
            {
                "file": filenames if filenames is not None else np.arange(len(y_true)),
                "age": y_true[:, 0],
                "gender": y_true[:, 1].astype(int),
                "predicted_age": np.round(y_pred[:, 0], 2),
                "predicted_gender": y_pred[:, 1].astype(int),
                # The one convention of every answer skface gives: the probability of the predicted gender.
                "gender_probability": np.round(proba.max(axis=1), 4),
                "age_error": np.round(y_pred[:, 0] - y_true[:, 0], 2),
                **({"age_low": np.round(intervals[:, 0], 1), "age_high": np.round(intervals[:, 1], 1)}
                   if intervals is not None else {}),
            }
        )
        table.to_csv(out / "test_predictions.csv", index=False)
        mlflow.log_artifacts(folder, artifact_path="evaluation")
    return figures


def log_model_summary(model) -> None:
    """The network's Keras summary, as a text artifact."""
    lines = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    mlflow.log_text("\n".join(lines) + "\n", "model_summary.txt")
