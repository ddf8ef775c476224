"""The recipes behind the MLflow entry points: train, sweep and evaluate, each one tracked run.

``experiments/*.py`` parse the command line (:mod:`skface.cli.options`) and
call these with typed keyword arguments; training itself is
:func:`skface.network.pipeline.train_pipeline`, the same as ``skface train``.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import mlflow
import numpy as np
from joblib import Parallel, delayed
from sklearn.model_selection import ParameterGrid

from ..data.sources import find_utkface, resolve_data, train_test_data
from ..evaluation import evaluate
from ..exceptions import UTKFaceError
from ..network.pipeline import train_pipeline, training_data
from .callbacks import MlflowMetricsCallback
from .registry import register
from .reports import log_evaluation, log_model_summary
from .runs import (
    environment_tags,
    log_data,
    log_params,
    name_run,
    set_experiment,
    stops_deferred,
    tracked_run,
    ui_link,
)


def _as_param(value):
    """A hyperparameter as the command line writes it, so that logged params read like the options."""
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) or "none"
    return 0 if value is None else value  # early_stopping=None is 0 on the command line


def _fit_and_log(split, params: dict, seed: int, *, verbose: int = 1, init=None):
    """Fit one pipeline inside the active run and log everything about it. Returns (pipeline, figures).

    ``init`` (as :func:`skface.cli.options.training_arguments` gives it) fine-tunes a saved model's network.
    """
    log_params({**{name: _as_param(value) for name, value in params.items()}, "random_state": seed})
    if init is not None:
        log_params({"init_model": init.lineage["path"]})
        mlflow.set_tag("skface.init_model", json.dumps(init.lineage))
    n_train = len(split.X_train)
    n_val = int(np.floor(params.get("validation_split", 0.1) * n_train))
    log_data(split.data, n_train=n_train - n_val, n_test=len(split.X_test), n_val=n_val,
             n_calibration=len(split.X_calibration))
    with stops_deferred():  # a stop ends the training after its batch, not inside the epoch's commit to the store
        pipeline, seconds = train_pipeline(split.X_train, split.y_train, params, image_size=split.data.image_size,
                                           color=split.data.color, seed=seed, verbose=verbose,
                                           callbacks=[MlflowMetricsCallback()],
                                           calibration=(split.X_calibration, split.y_calibration),
                                           init=None if init is None else init.estimator)
    estimator = pipeline[-1]
    mlflow.log_metrics({"train_seconds": seconds, "epochs_trained": estimator.n_epochs_})
    figures = log_evaluation(pipeline, split.X_test, split.y_test, history=estimator.history_,
                             filenames=split.test_filenames, race=split.race_test)
    log_model_summary(estimator.model_)
    return pipeline, figures


def _champion_scorer(split, *, test_split: float, seed: int, n_synthetic: int):
    """Scores a model URI on the test faces of ``split``, made at that model's own image size and colour."""

    def score(model_uri: str) -> float:
        from .pyfunc import load_estimator

        estimator = load_estimator(model_uri)[-1]
        height, _, channels = estimator.input_shape_
        color = "grayscale" if channels == 1 else "rgb"
        X_test = split.X_test
        if (height, color) != (split.data.image_size, split.data.color):
            # The same faces: the split depends on the labels and the seed only.
            X_test = train_test_data(split.data.source, test_split=test_split, seed=seed, image_size=height,
                                     color=color, n_synthetic=n_synthetic, verbose=False).X_test
        return evaluate(split.y_test, *estimator.predict_with_proba(X_test))["score"]

    return score


def run_train(*, params: dict, data: str = "auto", extra_data=(), n_synthetic: int = 2000, image_size: int = 64,
              color: str = "grayscale", test_split: float = 0.2, calibration_split: float = 0.0,
              child_calibration_split: float = 0.0, train_on_extra: bool = True, balance_age_bands: bool = False,
              aligned_views: bool = False, seed: int = 0,
              config: str | None = None, init=None, registered_model: str = "skface",
              experiment: str | None = None) -> dict:
    """The ``main`` and ``configuration`` entry points: train (or fine-tune), evaluate, log, register.

    Parameters
    ----------
    params : dict
        AgeGenderCNN's hyperparameters (``random_state`` is ``seed``).
    data, extra_data, n_synthetic, image_size, color, test_split, calibration_split, child_calibration_split,
    train_on_extra, balance_age_bands, aligned_views, seed
        The data and its split, as in :func:`skface.network.pipeline.training_data`.
    config : str, optional
        Name of the configuration that ``params`` came from, logged as a param.
    init : Bunch, optional
        A saved model to fine-tune instead of training a new network: its
        ``estimator`` (:func:`skface.network.pipeline.initial_estimator`) and
        its ``lineage`` (``path`` and how it was trained), logged as the param
        ``init_model`` and the tag ``skface.init_model``. This is what
        :func:`skface.cli.options.training_arguments` gives for
        ``--init-model``.
    registered_model : str, default="skface"
        Registered model that gets a new version.
    experiment : str, optional
        MLflow experiment (see :func:`skface.tracking.runs.set_experiment`).

    Returns
    -------
    summary : dict
        ``run_id``, ``model_uri``, ``version``, ``promoted``, ``reason``,
        ``figures`` and ``data``.
    """
    from .pyfunc import log_model

    set_experiment(experiment)
    with tracked_run() as run:
        mlflow.set_tags({**environment_tags(), "skface.entry_point": "main"})
        log_params({"config": config or "none"})
        split = training_data(data=data, extra_data=extra_data, test_split=test_split,
                              calibration_split=calibration_split, child_calibration_split=child_calibration_split,
                              train_on_extra=train_on_extra, balance_age_bands=balance_age_bands,
                              aligned_views=aligned_views, seed=seed,
                              image_size=image_size, color=color, n_synthetic=n_synthetic)
        name_run(f"{config or params['architecture']}-{split.data.kind}-{params['epochs']}ep"
                 + ("" if init is None else "-finetuned"))
        pipeline, figures = _fit_and_log(split, params, seed, init=init)
        info = log_model(pipeline)
        version, promoted, reason = register(
            info, registered_model, split.data, figures["test_score"],
            _champion_scorer(split, test_split=test_split, seed=seed, n_synthetic=n_synthetic))
        return {"run_id": run.info.run_id, "model_uri": info.model_uri, "version": version,
                "promoted": promoted, "reason": reason, "figures": figures, "data": split.data.source,
                "ui": ui_link(run)}


def run_sweep(*, grid: dict, params: dict, max_trials: int = 8, data: str = "auto", extra_data=(),
              n_synthetic: int = 2000, image_size: int = 64, color: str = "grayscale", test_split: float = 0.2,
              calibration_split: float = 0.0, child_calibration_split: float = 0.0, train_on_extra: bool = True,
              balance_age_bands: bool = False,
              aligned_views: bool = False, seed: int = 0, config: str | None = None, grid_text: str | None = None,
              registered_model: str = "skface", experiment: str | None = None, backend: str = "local",
              n_jobs: int = -1) -> dict:
    """The ``sweep`` entry point: a grid over hyperparameters, one child run per trial.

    Trials are ranked by their last validation loss (never by the test
    figures); the parent run logs the best trial's params and test figures,
    logs its model and registers it. The trials run through joblib: one
    after another in this process, or as Spark tasks at once
    (``backend="spark"``, :func:`skface.spark.joblib_backend`), each
    logging its child run from where it runs.

    Parameters
    ----------
    grid : dict
        Hyperparameter name to the list of its values (``ParameterGrid``).
    params : dict
        The hyperparameters that the grid varies.
    max_trials : int, default=8
        At most this many trials of the grid, in its order.
    grid_text : str, optional
        The grid as the user wrote it, logged as a param.
    backend : {"local", "spark"}, default="local"
        Where the trials run: one after another in this process, or on the
        executors of the active Spark session (else one started by
        :func:`skface.spark.spark_session`: spark-submit's master, ``$MASTER``
        or ``local[*]``). Spark's executors log to the same tracking store,
        so on a cluster it must be a tracking server they reach
        (``MLFLOW_TRACKING_URI=http://...``).
    n_jobs : int, default=-1
        With ``backend="spark"``, trials at a time; -1 is as many as the
        executors run at once.
    data, extra_data, n_synthetic, image_size, color, test_split, calibration_split, child_calibration_split,
    train_on_extra, balance_age_bands, aligned_views, seed
        As in :func:`run_train`; so are ``config``, ``registered_model`` and ``experiment``.

    Returns
    -------
    summary : dict
        ``run_id``, ``best_trial``, ``best_params``, ``version``,
        ``promoted``, ``reason`` and ``figures``.
    """
    from .pyfunc import log_model

    if backend not in ("local", "spark"):
        raise ValueError(f"backend must be 'local' or 'spark', got {backend!r}.")
    set_experiment(experiment)
    with tracked_run() as parent:
        mlflow.set_tags({**environment_tags(), "skface.entry_point": "sweep", "skface.backend": backend})
        split = training_data(data=data, extra_data=extra_data, test_split=test_split,
                              calibration_split=calibration_split, child_calibration_split=child_calibration_split,
                              train_on_extra=train_on_extra, balance_age_bands=balance_age_bands,
                              aligned_views=aligned_views, seed=seed,
                              image_size=image_size, color=color, n_synthetic=n_synthetic)
        log_params({"grid": grid_text or str(grid), "config": config or "none"})
        name_run(f"sweep-{config or params['architecture']}-{split.data.kind}-{len(list(ParameterGrid(grid)))}x")
        trials = list(ParameterGrid(grid))[:max_trials]
        where = {"tracking_uri": mlflow.get_tracking_uri(), "experiment_id": parent.info.experiment_id,
                 "parent_run_id": parent.info.run_id}
        jobs = (delayed(_trial)(split, {**params, **overrides}, overrides, seed, number, **where)
                for number, overrides in enumerate(trials, start=1))
        with _trial_backend(backend, n_jobs):
            # In this process each trial reports as it ends; Spark's come back together.
            results = Parallel(n_jobs=1 if backend == "local" else n_jobs, batch_size=1,
                               return_as="generator" if backend == "local" else "list")(jobs)
            best = None
            for trial in results:
                figures = trial["figures"]
                print(f"trial {trial['number']}/{len(trials)} {trial['overrides']}: val_loss {-trial['key']:.3f}, "
                      f"test age MAE {figures['test_age_mae']:.2f}, gender acc {figures['test_gender_accuracy']:.3f}")
                if best is None or trial["key"] > best["key"]:
                    best = trial
        overrides, figures = best["overrides"], best["figures"]
        mlflow.log_params({f"best_{k}": _as_param(v) for k, v in overrides.items()})
        mlflow.log_params({"best_trial": best["number"], "best_run_id": best["run_id"], "n_trials": len(trials)})
        mlflow.log_metrics(figures)
        info = log_model(best["pipeline"])
        version, promoted, reason = register(
            info, registered_model, split.data, figures["test_score"],
            _champion_scorer(split, test_split=test_split, seed=seed, n_synthetic=n_synthetic))
        return {"run_id": parent.info.run_id, "best_trial": best["number"], "best_params": overrides,
                "version": version, "promoted": promoted, "reason": reason, "figures": figures, "ui": ui_link(parent)}


def _trial_backend(backend: str, n_jobs: int):
    """The joblib backend that the sweep's trials run on."""
    if backend == "spark":
        from ..spark import joblib_backend

        return joblib_backend(n_jobs)
    return contextlib.nullcontext()


def _trial(split, params: dict, overrides: dict, seed: int, number: int, *, tracking_uri: str, experiment_id: str,
           parent_run_id: str) -> dict:
    """One trial of a sweep in a child run of ``parent_run_id``, in this process or on a Spark executor."""
    # An executor inherits the environment of a driver that `mlflow run` started, whose run id would make
    # start_run resume the parent run instead of starting a child.
    os.environ.pop("MLFLOW_RUN_ID", None)
    mlflow.set_tracking_uri(tracking_uri)
    name = ",".join(f"{k}={_as_param(v)}" for k, v in overrides.items())
    with tracked_run(nested=True, parent_run_id=parent_run_id, experiment_id=experiment_id,
                     run_name=f"trial-{number}-{name}") as run:
        mlflow.set_tag("skface.entry_point", "sweep-trial")
        pipeline, figures = _fit_and_log(split, params, seed, verbose=0)
        history = pipeline[-1].history_
        key = -history["val_loss"][-1] if "val_loss" in history else -history["loss"][-1]
        mlflow.log_metric("selection_key", key)
    return {"key": key, "number": number, "overrides": overrides, "pipeline": pipeline, "figures": figures,
            "run_id": run.info.run_id}


def _training_data_of(model_uri: str) -> tuple[str | None, str | None]:
    """``(kind, source)`` of the data a model was trained on, as logged; ``(None, None)`` if unknown."""
    if model_uri == "pretrained":
        from ..network.persistence import read_metadata

        source = read_metadata().get("data")
        return ("synthetic" if source == "synthetic" else "utkface", source) if source else (None, None)
    run_id = mlflow.models.get_model_info(model_uri).run_id
    if not run_id:
        return None, None
    tags = mlflow.MlflowClient().get_run(run_id).data.tags
    return tags.get("skface.data_kind"), tags.get("skface.data_source")


def _evaluation_data(model_uri: str, data: str) -> str:
    """What ``data="auto"`` means for evaluation: the faces the model was trained on, when they are here.

    A model trained on real faces is never scored on synthetic ones unless
    ``data="synthetic"`` asks for it: their figures would read as if the
    model were broken.
    """
    if data != "auto":
        return data
    kind, source = _training_data_of(model_uri)
    if kind == "utkface" and source and Path(source).exists():
        print(f"Evaluating on the data {model_uri} was trained on: {source} (its test split).")
        return source
    if kind == "utkface" and find_utkface() is None:
        raise UTKFaceError(
            f"{model_uri} was trained on real faces ({source}), which are not here, and no UTKFace folder or "
            "archive is under ./data/; pass data=PATH (-P data=PATH) to evaluate it on real faces, or "
            "data=synthetic to score it on synthetic faces anyway."
        )
    return data


def run_evaluate(*, model_uri: str, data: str = "auto", n_synthetic: int = 2000, test_split: float = 0.2,
                 seed: int = 0, experiment: str | None = None) -> dict:
    """The ``evaluate`` entry point: test figures and plots of any model URI on a dataset.

    Parameters
    ----------
    model_uri : str
        An MLflow model URI, or ``"pretrained"`` for the model shipped with
        the package.
    data : str, default="auto"
        ``"auto"``: the faces the model was trained on, when they are here
        (its logged data source; for ``"pretrained"``, the folder its
        metadata names), else a UTKFace folder or archive under ``./data/``;
        a model trained on real faces is never scored on synthetic ones
        unless ``data="synthetic"`` is given. Otherwise as in
        :func:`run_train`.
    n_synthetic, seed
        As in :func:`run_train`; the images are made at the model's size and
        colour.
    test_split : float, default=0.2
        Evaluate on the test faces of the split that training with the same
        ``seed`` made; 1 or more evaluates on every face.
    experiment : str, optional
        As in :func:`run_train`.

    Returns
    -------
    summary : dict
        ``run_id``, ``figures`` and ``n_test``.
    """
    from .pyfunc import load_estimator

    set_experiment(experiment)
    with tracked_run() as run:
        mlflow.set_tags({**environment_tags(), "skface.entry_point": "evaluate",
                         "skface.evaluated_model": model_uri})
        if model_uri == "pretrained":
            from ..network.persistence import load_pretrained

            pipeline = load_pretrained()
        else:
            pipeline = load_estimator(model_uri)
        data = _evaluation_data(model_uri, data)
        height, _, channels = pipeline[-1].input_shape_
        size = {"image_size": height, "color": "grayscale" if channels == 1 else "rgb", "n_synthetic": n_synthetic}
        if test_split >= 1:
            faces = resolve_data(data, random_state=seed, **size)
            X_test, y_test, names = faces.images, faces.target, faces.filenames
        else:
            split = train_test_data(data, test_split=test_split, seed=seed, **size)
            faces, X_test, y_test, names = split.data, split.X_test, split.y_test, split.test_filenames
        log_params({"model_uri": model_uri, "test_split": test_split, "seed": seed})
        name_run(f"evaluate-{model_uri.rsplit('/', 1)[-1] if ':/' in model_uri else model_uri}-{faces.kind}")
        log_data(faces, n_train=0, n_test=len(X_test), n_val=0)
        figures = log_evaluation(pipeline, X_test, y_test, filenames=names)
        return {"run_id": run.info.run_id, "figures": figures, "n_test": len(X_test), "ui": ui_link(run)}
