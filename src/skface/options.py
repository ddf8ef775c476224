"""Command-line options shared by the experiment scripts (imports nothing heavy, so ``--help`` is quick)."""

from __future__ import annotations

import argparse


def whole_number(text) -> int:
    """An int from "30" or "30.0" (MLproject passes numbers typed ``float``)."""
    value = float(text)
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(value)


# Estimator parameters that the command lines expose, with their parsers.
ESTIMATOR_OPTIONS = {
    "filters": (lambda text: tuple(int(v) for v in str(text).split(",")), "32,64,128,256",
                "filters of each convolution block, comma-separated"),
    "kernel_size": (whole_number, 3, "side of the convolution kernels"),
    "dense_units": (whole_number, 256, "units of each head's dense layer"),
    "dropout": (float, 0.3, "dropout after each dense layer"),
    "learning_rate": (float, 1e-3, "Adam's learning rate"),
    "epochs": (whole_number, 30, "training epochs"),
    "batch_size": (whole_number, 32, "images per gradient step"),
    "validation_split": (float, 0.1, "share of the training data held out for validation"),
    "age_loss_weight": (float, 1.0, "weight of the age loss (MAE, years)"),
    "gender_loss_weight": (float, 1.0, "weight of the gender loss (binary cross-entropy)"),
    "early_stopping": (whole_number, 0, "patience in epochs on the validation loss; 0 trains all epochs"),
}


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that choose and split the data."""
    parser.add_argument("--data", default="auto",
                        help="'auto' (a UTKFace folder or archive under ./data/, else synthetic faces), "
                             "'synthetic', or the path of a UTKFace folder or archive")
    parser.add_argument("--n-synthetic", type=whole_number, default=2000, help="number of synthetic faces, when used")
    parser.add_argument("--image-size", type=whole_number, default=64, help="side of the square input images in pixels")
    parser.add_argument("--color", choices=["grayscale", "rgb"], default="grayscale", help="input colour")
    parser.add_argument("--test-split", type=float, default=0.2,
                        help="share of the data held out for the test figures (stratified by age band and gender)")
    parser.add_argument("--seed", type=whole_number, default=0, help="seed of the data split, synthetic faces and training")
    parser.add_argument("--experiment", default=None,
                        help="MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else 'skface'); "
                             "ignored under `mlflow run`, which sets it")


def add_estimator_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per AgeGenderCNN hyperparameter."""
    for name, (kind, default, text) in ESTIMATOR_OPTIONS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind if name != "filters" else str,
                            default=default, help=text)


def estimator_params(args: argparse.Namespace) -> dict:
    """AgeGenderCNN parameters from parsed options."""
    params = {}
    for name, (kind, _, _) in ESTIMATOR_OPTIONS.items():
        value = getattr(args, name)
        params[name] = kind(value) if name == "filters" else value
    if params["early_stopping"] == 0:
        params["early_stopping"] = None
    return params
