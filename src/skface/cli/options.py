"""Command-line options shared by the experiment scripts (imports nothing heavy, so ``--help`` is quick)."""

from __future__ import annotations

import argparse


def whole_number(text) -> int:
    """An int from "30" or "30.0" (MLproject passes numbers typed ``float``)."""
    value = float(text)
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(value)


def boolean(text) -> bool:
    """A bool from true/false, yes/no, 1/0 (any case)."""
    value = str(text).strip().lower()
    if value in ("true", "yes", "1"):
        return True
    if value in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _choice(*choices):
    def parse(text):
        if text not in choices:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}, got {text!r}")
        return text

    parse.__name__ = "choice"
    return parse


def zoom_factors(text) -> tuple[float, ...]:
    """Zoom factors from "1.075,0.935"; "none" (or nothing) for none."""
    text = str(text).strip()
    if text.lower() in ("", "none", "()"):
        return ()
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated zoom factors like 1.075,0.935 or none, "
                                         f"got {text!r}") from None


# Estimator parameters that the command lines expose, with their parsers.
ESTIMATOR_OPTIONS = {
    "architecture": (_choice("seed", "vgg_bn"), "seed",
                     "network: 'seed' (the seed's CNN) or 'vgg_bn' (double convolutions, batch norm, pooling)"),
    "filters": (lambda text: tuple(int(v) for v in str(text).split(",")), "32,64,128,256",
                "filters of each convolution block, comma-separated"),
    "kernel_size": (whole_number, 3, "side of the convolution kernels"),
    "dense_units": (whole_number, 256, "units of each head's dense layer"),
    "bottleneck": (whole_number, 0, "with the seed network, a 1x1 convolution to this many channels before "
                   "the flatten (smaller dense layers); 0 for none"),
    "dropout": (float, 0.3, "dropout after each dense layer"),
    "learning_rate": (float, 1e-3, "Adam's learning rate (the peak of a cosine schedule)"),
    "lr_schedule": (_choice("constant", "cosine"), "constant", "learning-rate schedule: constant or cosine decay"),
    "weight_decay": (float, 0.0, "decoupled weight decay (AdamW); 0 uses Adam"),
    "augment": (boolean, False, "random flips, shifts, rotations, zoom and contrast while training"),
    "age_head": (_choice("regression", "dex"), "regression",
                 "age output: 'regression' (one ReLU unit) or 'dex' (expected value of a softmax over ages)"),
    "label_smoothing": (float, 0.0, "label smoothing of the gender loss"),
    "precision": (_choice("float32", "mixed_bfloat16"), "float32",
                  "compute type: float32, or mixed_bfloat16 (fast on CPUs with AMX/AVX-512 BF16)"),
    "flip_tta": (boolean, False, "average predictions with those of the mirrored image"),
    "zoom_tta": (zoom_factors, "none", "also average with views zoomed by these factors, comma-separated "
                 "(e.g. 1.075,0.935), or none"),
    "epochs": (whole_number, 30, "training epochs"),
    "batch_size": (whole_number, 32, "images per gradient step"),
    "validation_split": (float, 0.1, "share of the training data held out for validation"),
    "age_loss_weight": (float, 1.0, "weight of the age loss (MAE, years)"),
    "gender_loss_weight": (float, 1.0, "weight of the gender loss (binary cross-entropy)"),
    "early_stopping": (whole_number, 0, "patience in epochs on the validation loss; 0 trains all epochs"),
}

# Options whose value is a tuple, written comma-separated (and with "/" inside one choice of a grid).
TUPLE_OPTIONS = ("filters", "zoom_tta")


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
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind if name not in TUPLE_OPTIONS else str,
                            default=default, help=text)


def add_configuration_argument(parser: argparse.ArgumentParser) -> None:
    """``--config NAME``: train a named configuration of :mod:`skface.configurations`.

    See :func:`apply_configuration`, which the parsed arguments must go through.
    """
    from ..configurations import CONFIGURATIONS

    parser.add_argument("--config", default="none", choices=["none", *sorted(CONFIGURATIONS)],
                        help="a named configuration (see skface.configurations) that sets the image size, colour and "
                             "every hyperparameter; 'none' takes them from the options")


def apply_configuration(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Set the image size, colour and hyperparameters of ``args.config`` on ``args``, as if typed as options.

    Hyperparameters that the configuration leaves out keep the options'
    defaults. Any of these options given as well is an error through
    ``parser`` (the configuration would silently override it).
    """
    if args.config == "none":
        return
    from ..configurations import get_configuration

    config = get_configuration(args.config)
    given = [name for name in ("image_size", "color", *ESTIMATOR_OPTIONS)
             if getattr(args, name) != parser.get_default(name)]
    if given:
        options = ", ".join(f"--{name.replace('_', '-')}" for name in given)
        parser.error(f"--config {args.config} sets the image size, colour and every hyperparameter, so {options} "
                     f"would be ignored; leave out {options}, or leave out --config and give every option yourself.")
    args.image_size, args.color = config["image_size"], config["color"]
    for name, value in config["estimator"].items():
        if name in TUPLE_OPTIONS:
            value = ",".join(map(str, value)) or "none"
        setattr(args, name, value)


def estimator_params(args: argparse.Namespace) -> dict:
    """AgeGenderCNN parameters from parsed options."""
    params = {}
    for name, (kind, _, _) in ESTIMATOR_OPTIONS.items():
        value = getattr(args, name)
        params[name] = kind(value) if name in TUPLE_OPTIONS else value
    if params["early_stopping"] == 0:
        params["early_stopping"] = None
    return params
