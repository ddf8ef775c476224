"""The recipes behind the MLflow entry points: train, sweep and evaluate, each one tracked run.

``experiments/*.py`` parse the command line and call these; the logic lives
here so that the scripts do not repeat one another.
"""

from __future__ import annotations

import argparse
import time

import mlflow
import numpy as np
from sklearn.model_selection import ParameterGrid
from sklearn.pipeline import Pipeline

from ..cli.options import ESTIMATOR_OPTIONS, TUPLE_OPTIONS, estimator_params
from ..data.preprocessing import ImagePreprocessor
from ..data.sources import resolve_data
from ..evaluation import stratified_split
from ..network.estimator import AgeGenderCNN
from .callbacks import MlflowMetricsCallback
from .registry import register
from .reports import log_evaluation, log_model_summary
from .runs import environment_tags, log_data, log_params, set_experiment, tracked_run


def _test_indices(data, test_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row indices, stratified by age band and gender."""
    train, test, _, _ = stratified_split(np.arange(len(data.target)), data.target, test_size=test_split,
                                         random_state=seed)
    return np.sort(train), np.sort(test)


def _load(args):
    data = resolve_data(args.data, image_size=args.image_size, color=args.color,
                        n_synthetic=args.n_synthetic, random_state=args.seed)
    train, test = _test_indices(data, args.test_split, args.seed)
    names = np.asarray(data.filenames)
    return data, (data.images[train], data.images[test], data.target[train], data.target[test], names[test])


def _fit_and_log(data, split, params: dict, seed: int, *, verbose: int = 1):
    """Fit one estimator inside the active run and log everything about it. Returns (pipeline, figures)."""
    X_train, X_test, y_train, y_test, test_names = split
    estimator = AgeGenderCNN(**params, random_state=seed, verbose=verbose,
                             callbacks=[MlflowMetricsCallback()])
    logged = {k: v for k, v in estimator.get_params().items() if k not in ("callbacks", "verbose")}
    logged["filters"] = ",".join(map(str, logged["filters"]))
    logged["zoom_tta"] = ",".join(map(str, logged["zoom_tta"] or ())) or "none"  # as on the command line
    logged["early_stopping"] = logged["early_stopping"] or 0  # as on the command line: 0 = off
    log_params(logged)
    n_val = int(np.floor(params["validation_split"] * len(X_train)))
    log_data(data, n_train=len(X_train) - n_val, n_test=len(X_test), n_val=n_val)
    start = time.perf_counter()
    estimator.fit(X_train, y_train)
    mlflow.log_metrics({"train_seconds": time.perf_counter() - start, "epochs_trained": estimator.n_epochs_})
    pipeline = Pipeline([("preprocess", ImagePreprocessor(image_size=data.image_size, color=data.color)),
                         ("model", estimator)])
    figures = log_evaluation(pipeline, X_test, y_test, history=estimator.history_, filenames=test_names)
    log_model_summary(estimator.model_)
    return pipeline, figures


def run_train(args: argparse.Namespace) -> dict:
    """The ``main`` entry point: train, evaluate, log, register. Returns a summary."""
    from .pyfunc import log_model

    set_experiment(args.experiment)
    with tracked_run() as run:
        mlflow.set_tags({**environment_tags(), "skface.entry_point": "main"})
        log_params({"config": args.config})
        data, split = _load(args)
        pipeline, figures = _fit_and_log(data, split, estimator_params(args), args.seed)
        info = log_model(pipeline)
        version, promoted, reason = register(info, args.registered_model, data, figures["test_score"])
        return {"run_id": run.info.run_id, "model_uri": info.model_uri, "version": version,
                "promoted": promoted, "reason": reason, "figures": figures, "data": data.source}


def run_sweep(args: argparse.Namespace) -> dict:
    """The ``sweep`` entry point: a grid over hyperparameters, one child run per trial.

    Trials are ranked by their last validation loss (never by the test
    figures); the parent run logs the best trial's params and test figures,
    logs its model and registers it.
    """
    from .pyfunc import log_model

    grid = parse_grid(args.grid)
    base = estimator_params(args)
    set_experiment(args.experiment)
    with tracked_run() as parent:
        mlflow.set_tags({**environment_tags(), "skface.entry_point": "sweep"})
        data, split = _load(args)
        log_params({"grid": args.grid, "config": args.config})
        trials = list(ParameterGrid(grid))[: args.max_trials]
        best = None
        for number, overrides in enumerate(trials, start=1):
            params = {**base, **overrides}
            with tracked_run(nested=True, run_name=f"trial-{number}"):
                mlflow.set_tag("skface.entry_point", "sweep-trial")
                pipeline, figures = _fit_and_log(data, split, params, args.seed, verbose=0)
                estimator = pipeline.steps[-1][1]
                val = {k: v[-1] for k, v in estimator.history_.items() if k.startswith("val_")}
                key = -val.get("val_loss", estimator.history_["loss"][-1])
                mlflow.log_metric("selection_key", key)
                print(f"trial {number}/{len(trials)} {overrides}: val_loss {-key:.3f}, "
                      f"test age MAE {figures['test_age_mae']:.2f}, gender acc {figures['test_gender_accuracy']:.3f}")
                if best is None or key > best[0]:
                    best = (key, number, overrides, pipeline, figures, mlflow.active_run().info.run_id)
        key, number, overrides, pipeline, figures, best_run = best
        mlflow.log_params({f"best_{k}": (",".join(map(str, v)) if isinstance(v, tuple) else v)
                           for k, v in overrides.items()})
        mlflow.log_params({"best_trial": number, "best_run_id": best_run, "n_trials": len(trials)})
        mlflow.log_metrics(figures)
        info = log_model(pipeline)
        version, promoted, reason = register(info, args.registered_model, data, figures["test_score"])
        return {"run_id": parent.info.run_id, "best_trial": number, "best_params": overrides, "version": version,
                "promoted": promoted, "reason": reason, "figures": figures}


def parse_grid(text: str) -> dict:
    """``"dropout=0.2,0.4;dense_units=64,128"`` -> ``{"dropout": [0.2, 0.4], "dense_units": [64, 128]}``.

    Tuple values (``filters``, ``zoom_tta``) are separated by ``/`` inside a
    choice: ``"filters=16/32,32/64"``.
    """
    grid = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        if "=" not in part:
            raise ValueError(f"grid entry {part!r} must read name=value1,value2; e.g. 'dropout=0.2,0.4'.")
        name, values = (s.strip() for s in part.split("=", 1))
        if name not in ESTIMATOR_OPTIONS:
            raise ValueError(f"grid names an unknown hyperparameter {name!r}; choose from {sorted(ESTIMATOR_OPTIONS)}.")
        kind = ESTIMATOR_OPTIONS[name][0]
        try:
            grid[name] = [kind(v.replace("/", ",") if name in TUPLE_OPTIONS else v) for v in values.split(",")]
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise ValueError(f"grid values of {name!r} are not valid ({exc}), got {values!r}.") from None
    if not grid:
        raise ValueError("the grid is empty; pass e.g. 'dropout=0.2,0.4;dense_units=64,128'.")
    return grid


def run_evaluate(args: argparse.Namespace) -> dict:
    """The ``evaluate`` entry point: test figures and plots of any model URI on a dataset.

    ``model_uri="pretrained"`` evaluates the model shipped with the package.
    """
    from .pyfunc import load_estimator

    set_experiment(args.experiment)
    with tracked_run() as run:
        mlflow.set_tags({**environment_tags(), "skface.entry_point": "evaluate",
                         "skface.evaluated_model": args.model_uri})
        if args.model_uri == "pretrained":
            from ..network.persistence import load_pretrained

            pipeline = load_pretrained()
        else:
            pipeline = load_estimator(args.model_uri)
        preprocessor = pipeline.steps[0][1]
        args.image_size, args.color = preprocessor.image_size, preprocessor.color
        data = resolve_data(args.data, image_size=args.image_size, color=args.color,
                            n_synthetic=args.n_synthetic, random_state=args.seed)
        if args.test_split >= 1:
            test = np.arange(len(data.target))
        else:
            test = _test_indices(data, args.test_split, args.seed)[1]
        X_test, y_test, names = data.images[test], data.target[test], np.asarray(data.filenames)[test]
        log_params({"model_uri": args.model_uri, "test_split": args.test_split, "seed": args.seed})
        log_data(data, n_train=0, n_test=len(X_test), n_val=0)
        figures = log_evaluation(pipeline, X_test, y_test, filenames=names)
        return {"run_id": run.info.run_id, "figures": figures, "n_test": len(X_test)}


def print_figures(figures: dict) -> None:
    """A short table of the main test figures."""
    rows = [("age MAE (years)", "test_age_mae"), ("CS@5", "test_cs5"), ("gender accuracy", "test_gender_accuracy"),
            ("gender ROC AUC", "test_gender_roc_auc"), ("score", "test_score")]
    for label, key in rows:
        if key in figures:
            print(f"  {label:<18}{figures[key]:>8.3f}")
    bands = [k[len("test_age_mae_"):] for k in figures if k.startswith("test_age_mae_")]
    if bands:
        print(f"  {'age band':<10}{'n':>6}{'age MAE':>9}{'gender acc':>12}")
        for band in bands:
            print(f"  {band:<10}{figures[f'test_n_{band}']:>6.0f}{figures[f'test_age_mae_{band}']:>9.2f}"
                  f"{figures[f'test_gender_accuracy_{band}']:>12.3f}")

