"""MLflow tracking of skface runs: what a run logs, and the champion rule of the registry.

The experiment scripts in ``experiments/`` are thin command lines over
:func:`train_and_log`, :func:`evaluate_and_log` and :func:`promote`.

Champion rule
-------------
Every run registers a new version of its registered model. The alias
``champion`` moves to the new version when

1. no version holds it yet; or
2. the champion was trained on synthetic faces and the new version on real
   ones (a synthetic run never displaces a real-face champion); or
3. both were evaluated on the same data source and the new version's test
   ``score`` (mean of gender accuracy and age R^2) is higher.

Otherwise it stays. The tag ``skface.promotion`` on each version says which
case applied and with what figures.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from . import __version__
from .evaluation import evaluate

DEFAULT_EXPERIMENT = "skface"
CHAMPION = "champion"
#: Params, tags and metrics are named the same in every entry point, so that
#: the MLflow UI's compare view lines them up.
TEST_PREFIX = "test_"


class MlflowMetricsCallback(keras.callbacks.Callback):
    """Log every epoch's losses, metrics and learning rate to the active MLflow run.

    Epochs are logged with ``step`` = the epoch number, counted from 1, so a
    run that is stopped keeps every epoch it finished.
    """

    def on_epoch_end(self, epoch, logs=None):
        values = {name: float(value) for name, value in (logs or {}).items() if np.isscalar(value)}
        values["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        mlflow.log_metrics(values, step=epoch + 1)


@contextlib.contextmanager
def tracked_run(**kwargs):
    """``mlflow.start_run`` that ends KILLED on Ctrl-C or SIGTERM and FAILED on any error.

    MLflow's own context manager marks an interrupted run FAILED; here an
    interruption is told apart, and what was logged before stays.
    """
    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    # System metrics (CPU, memory, disk; GPU where pynvml is present) for top-level runs.
    kwargs.setdefault("log_system_metrics", not kwargs.get("nested", False))
    run = mlflow.start_run(**kwargs)
    try:
        yield run
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    else:
        mlflow.end_run("FINISHED")
    finally:
        if previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def set_experiment(name: str | None = None) -> None:
    """Use experiment ``name``, else the one MLflow's environment names, else ``skface``.

    Under ``mlflow run`` the run already exists in the experiment that
    ``mlflow run`` chose, so nothing is changed.
    """
    if os.environ.get("MLFLOW_RUN_ID"):
        return
    if name:
        mlflow.set_experiment(name)
    elif os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        mlflow.set_experiment(os.environ["MLFLOW_EXPERIMENT_NAME"])
    elif os.environ.get("MLFLOW_EXPERIMENT_ID"):
        mlflow.set_experiment(experiment_id=os.environ["MLFLOW_EXPERIMENT_ID"])
    else:
        mlflow.set_experiment(DEFAULT_EXPERIMENT)


def environment_tags() -> dict[str, str]:
    """Package versions, CPU/GPU and git commit, as run tags."""
    import tensorflow as tf

    tags = {"skface.version": __version__, "python": platform.python_version()}
    for name in ("tensorflow", "keras", "scikit-learn", "numpy", "mlflow"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            tags[f"version.{name}"] = metadata.version(name)
    gpus = tf.config.list_physical_devices("GPU")
    tags["device"] = f"GPU x{len(gpus)}" if gpus else "CPU"
    tags["cpu"] = platform.processor() or platform.machine()
    tags["cpu_count"] = str(os.cpu_count())
    commit = _git_commit()
    if commit:
        tags["git_commit"] = commit
    return tags


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def log_params(params: dict) -> None:
    """Log params, leaving alone those already logged (``mlflow run`` logs its ``-P`` values first)."""
    run = mlflow.active_run()
    existing = MlflowClient().get_run(run.info.run_id).data.params
    fresh = {key: value for key, value in params.items() if key not in existing}
    if fresh:
        mlflow.log_params(fresh)


def log_data(data, n_train: int, n_test: int, n_val: int) -> None:
    """Log what the run was trained and tested on: params, tags and an MLflow dataset input."""
    log_params(
        {
            "data_kind": data.kind,
            "data_source": data.source,
            "data_digest": data.digest,
            "n_images": len(data.images),
            "n_skipped": len(data.skipped),
            "n_train": n_train,
            "n_validation": n_val,
            "n_test": n_test,
            "image_size": data.image_size,
            "color": data.color,
        }
    )
    mlflow.set_tags({"skface.data_kind": data.kind, "skface.data_source": data.source})
    if data.kind == "synthetic":
        mlflow.set_tag("skface.warning", "trained on SYNTHETIC faces: knows nothing about real faces")
    with warnings.catch_warnings():
        # MLflow registers its local-file dataset source twice and then warns that a path is
        # ambiguous between the two identical classes; nothing for a user to act on.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        dataset = mlflow.data.from_numpy(
            data.images, targets=data.target, source=data.source if data.kind == "utkface" else None, name=data.name
        )
    mlflow.log_input(dataset, context="training")
    if data.skipped:
        mlflow.log_text("\n".join(f"{name}\t{reason}" for name, reason in data.skipped) + "\n", "data/skipped.tsv")


def log_evaluation(pipeline, images: np.ndarray, y_true: np.ndarray, *, history: dict | None = None,
                   filenames=None, prefix: str = TEST_PREFIX) -> dict[str, float]:
    """Evaluate on held-out images; log the figures, plots and per-image predictions.

    Returns the figures, with ``prefix`` on their names as logged.
    """
    from . import plots

    estimator = pipeline.steps[-1][1]
    y_pred, proba = estimator.predict_with_proba(images)
    figures = {f"{prefix}{name}": value for name, value in evaluate(y_true, y_pred, proba).items()}
    mlflow.log_metrics(figures)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        drawn = {
            "age_predicted_vs_true.png": plots.predicted_vs_true_age(y_true, y_pred),
            "error_by_age_band.png": plots.error_by_age_band(y_true, y_pred),
            "gender_confusion_matrix.png": plots.gender_confusion_matrix(y_true, y_pred),
            "test_faces.png": plots.face_grid(images, y_true, y_pred),
        }
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
                "p_female": np.round(proba[:, 1], 4),
                "age_error": np.round(y_pred[:, 0] - y_true[:, 0], 2),
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


def promote(client: MlflowClient, name: str, version: str, *, data_kind: str, data_source: str,
            score: float) -> tuple[bool, str]:
    """Apply the champion rule (see the module docstring) to a new version.

    Returns whether the alias moved, and why; the reason is also set as the
    version's ``skface.promotion`` tag.
    """
    for key, value in {"skface.data_kind": data_kind, "skface.data_source": data_source,
                       "skface.test_score": f"{score:.6f}"}.items():
        client.set_model_version_tag(name, version, key, value)
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        champion = None
    if champion is None:
        promoted, reason = True, "promoted: first champion of this registered model"
    else:
        tags = champion.tags
        their_kind, their_source = tags.get("skface.data_kind"), tags.get("skface.data_source")
        their_score = float(tags.get("skface.test_score", "nan"))
        if their_kind == "synthetic" and data_kind == "utkface":
            promoted = True
            reason = f"promoted: trained on real faces, the champion v{champion.version} on synthetic ones"
        elif their_source != data_source:
            promoted = False
            reason = (
                f"not promoted: champion v{champion.version} was tested on {their_source}, this version "
                f"on {data_source}; scores on different data are not compared"
            )
        elif score > their_score:
            promoted = True
            reason = f"promoted: test score {score:.4f} beats champion v{champion.version}'s {their_score:.4f}"
        else:
            promoted = False
            reason = (
                f"not promoted: test score {score:.4f} does not beat champion v{champion.version}'s "
                f"{their_score:.4f}"
            )
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "skface.promotion", reason)
    return promoted, reason


def register(model_info, name: str, data, score: float) -> tuple[str, bool, str]:
    """Register the logged model as a new version of ``name`` and apply the champion rule."""
    client = MlflowClient()
    version = str(mlflow.register_model(model_info.model_uri, name).version)
    promoted, reason = promote(client, name, version, data_kind=data.kind, data_source=data.source, score=score)
    mlflow.set_tags({"skface.registered_version": version, "skface.promotion": reason})
    return version, promoted, reason
