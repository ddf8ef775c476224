"""Keras callbacks that log to MLflow."""

from __future__ import annotations

import mlflow
import numpy as np

from ..quiet import import_tensorflow_quietly

import_tensorflow_quietly()
import keras  # noqa: E402  (after the quiet import above)

from .runs import raise_if_stopped  # noqa: E402


class MlflowMetricsCallback(keras.callbacks.Callback):
    """Log every epoch's losses, metrics and learning rate to the active MLflow run.

    Epochs are logged with ``step`` = the epoch number, counted from 1, so a
    run that is stopped keeps every epoch it finished. After each batch,
    training or validation, it stops the training if the run was stopped
    (Ctrl-C, SIGTERM, or ``mlflow run`` killed): the safe point of
    :func:`skface.tracking.runs.stops_deferred`, and a second chance when an
    interruption was lost on the way.
    """

    def on_train_batch_end(self, batch, logs=None):
        raise_if_stopped()

    def on_test_batch_end(self, batch, logs=None):  # the validation at the end of each epoch
        raise_if_stopped()

    def on_epoch_end(self, epoch, logs=None):
        values = {name: float(value) for name, value in (logs or {}).items() if np.isscalar(value)}
        values["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        mlflow.log_metrics(values, step=epoch + 1)
