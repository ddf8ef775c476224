"""Command-line options of ``skface train`` and the experiment scripts, derived from the estimator.

:class:`~skface.AgeGenderCNN` is the one source of truth for its
hyperparameters: the options' names and defaults come from its signature,
their choices from its ``_parameter_constraints`` and their help from its
numpydoc ``Parameters`` section (as skorch's ``cli.py`` derives help). The
only defaults that differ on the command line are declared in
:data:`COMMAND_LINE_DEFAULTS`, with the reason.

Importing this module imports neither TensorFlow nor MLflow, so ``--help``
is quick.
"""

from __future__ import annotations

import argparse
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..network.estimator import AgeGenderCNN

# Estimator parameters that are not options: the seed comes from --seed (it also seeds the
# split and the synthetic faces), the scripts set the verbosity and the callbacks, and `skface train
# --init-model` sets warm_start.
NOT_OPTIONS = ("random_state", "verbose", "callbacks", "warm_start")

#: The one place where a command line's default differs from the estimator's, and why.
COMMAND_LINE_DEFAULTS = {
    # The main job (`mlflow run .`, experiments/train.py, `skface train`) trains the seed's 30
    # epochs; the estimator's default of 10 keeps a fit in a notebook or a grid search short,
    # which is also why a sweep's trials keep it.
    "train": {"epochs": 30},
    "sweep": {},
}

#: The data options, with their defaults: every training command takes these.
DATA_DEFAULTS = {"data": "auto", "extra_data": "none", "n_synthetic": 2000, "image_size": 64, "color": "grayscale",
                 "test_split": 0.2, "calibration_split": 0.0, "child_calibration_split": 0.0, "train_on_extra": True,
                 "balance_age_bands": False, "aligned_views": False, "seed": 0}
# The data options that a configuration may set (its "data" entry), beside the image size and colour.
CONFIGURED_DATA = ("calibration_split", "child_calibration_split", "train_on_extra", "balance_age_bands",
                   "aligned_views")


def whole_number(text) -> int:
    """An int from "30" or "30.0" (MLproject passes numbers typed ``float``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
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


def _number_list(kind: type, example: str) -> Callable:
    def parse(text) -> tuple:
        text = str(text).strip()
        if text.lower() in ("", "none", "()"):
            return ()
        try:
            return tuple(kind(float(v)) if kind is int and float(v).is_integer() else kind(v)
                         for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers like {example} or none, "
                                             f"got {text!r}") from None

    parse.__name__ = f"list of {kind.__name__}"
    return parse


def calibration_share(text) -> float:
    """A share of the training data for calibration: 0 (none) or strictly between 0 and 1."""
    return 0.0 if float(text) == 0 else share(text)


def share(text) -> float:
    """A share of the data, strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1 (exclusive), got {text!r}")
    return value


def _optional_whole_number(text) -> int | None:
    """A whole number, where 0 or "none" means None (MLproject has no null)."""
    if str(text).strip().lower() in ("none", ""):
        return None
    value = whole_number(text)
    return value or None


def _choice(choices: list[str]) -> Callable:
    def parse(text):
        if text not in choices:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}, got {text!r}")
        return text

    parse.__name__ = "choice"
    return parse


@dataclass(frozen=True)
class Option:
    """One estimator hyperparameter as a command-line option."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def format(self, value) -> str:
        """``value`` as typed on the command line (and as logged to MLflow)."""
        if isinstance(value, (tuple, list)):
            return ",".join(map(str, value)) or "none"
        if value is None:
            return "0"
        return str(value).lower() if isinstance(value, bool) else str(value)


def _parameter_help() -> dict[str, str]:
    """Each parameter's description in AgeGenderCNN's numpydoc, on one line."""
    doc = inspect.getdoc(AgeGenderCNN) or ""
    section = doc.split("Parameters\n----------\n", 1)[-1].split("\n\nAttributes\n", 1)[0]
    helps, name = {}, None
    for line in section.splitlines():
        header = re.match(r"^(\w+) : ", line)
        if header:
            name = header.group(1)
            helps[name] = []
        elif name and line.startswith("    "):
            helps[name].append(line.strip())
    # Literal markup (``"seed"``) reads as plain quotes on a terminal.
    return {key: " ".join(lines).replace("``", "") for key, lines in helps.items()}


def _choices_of(name: str) -> tuple[str, ...]:
    from sklearn.utils._param_validation import StrOptions

    for constraint in getattr(AgeGenderCNN, "_parameter_constraints", {}).get(name, []):
        if isinstance(constraint, StrOptions):
            return tuple(sorted(constraint.options))
    return ()


def estimator_options(command: str = "train") -> dict[str, Option]:
    """Every hyperparameter of :class:`~skface.AgeGenderCNN` as an :class:`Option`.

    ``command`` (``"train"`` or ``"sweep"``) picks its defaults from
    :data:`COMMAND_LINE_DEFAULTS`; the others are the estimator's own.
    """
    helps = _parameter_help()
    overrides = COMMAND_LINE_DEFAULTS[command]
    options = {}
    for name, parameter in inspect.signature(AgeGenderCNN).parameters.items():
        if name in NOT_OPTIONS:
            continue
        default, annotation = overrides.get(name, parameter.default), str(parameter.annotation)
        choices = _choices_of(name)
        if choices:
            parse = _choice(list(choices))
        elif isinstance(default, bool):
            parse = boolean
        elif annotation.startswith("tuple[int"):
            parse = _number_list(int, "32,64")
        elif annotation.startswith("tuple[float"):
            parse = _number_list(float, "1.075,0.935")
        elif annotation == "int | None":
            parse = _optional_whole_number
        elif isinstance(default, int):
            parse = whole_number
        elif isinstance(default, float):
            parse = float
        else:
            raise TypeError(f"AgeGenderCNN's parameter {name!r} ({annotation}) has no command-line type; "
                            "add one in skface.cli.options.estimator_options.")
        options[name] = Option(name, parse, default, helps.get(name, ""), choices)
    return options


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that choose and split the data."""
    d = DATA_DEFAULTS
    parser.add_argument("--data", default=d["data"],
                        help="'auto' (a UTKFace folder or archive under ./data/, else synthetic faces), "
                             "'synthetic', or the path of a UTKFace folder or archive")
    parser.add_argument("--extra-data", default=d["extra_data"],
                        help="more UTKFace folders or archives, comma-separated, for training only: the test faces "
                             "still come from --data alone; a photo already loaded is skipped; 'none' for none")
    parser.add_argument("--n-synthetic", type=whole_number, default=d["n_synthetic"],
                        help="number of synthetic faces, when used")
    parser.add_argument("--image-size", type=whole_number, default=d["image_size"],
                        help="side of the square input images in pixels")
    parser.add_argument("--color", choices=["grayscale", "rgb"], default=d["color"], help="input colour")
    parser.add_argument("--test-split", type=share, default=d["test_split"],
                        help="share of the data held out for the test figures (stratified by age band and gender)")
    parser.add_argument("--calibration-split", type=calibration_share, default=d["calibration_split"],
                        help="share of the training faces held out to calibrate the model's age ranges and gender "
                             "probability (AgeGenderCNN.conformalize); 0 for none, and then no age ranges")
    parser.add_argument("--child-calibration-split", type=calibration_share, default=d["child_calibration_split"],
                        help="share of the training faces under 13 held out to calibrate, if larger than "
                             "--calibration-split (their ranges' quantiles are the noisiest); 0 for the same share")
    parser.add_argument("--train-on-extra", type=boolean, nargs="?", const=True, default=d["train_on_extra"],
                        help="whether --extra-data is trained on; false keeps only its calibration faces (the same as "
                             "when trained on), to calibrate a model fine-tuned on --data alone from one trained on "
                             "both (--init-model) on every face that neither trained on")
    parser.add_argument("--balance-age-bands", type=boolean, nargs="?", const=True, default=d["balance_age_bands"],
                        help="repeat the training faces of the age bands that --extra-data dilutes, up to their "
                             "share in --data's training part")
    parser.add_argument("--aligned-views", type=boolean, nargs="?", const=True, default=d["aligned_views"],
                        help="also train on each training face as the face step gives a photo's face to the network "
                             "(found and warped onto the template), so that photos are answered as well as crops; "
                             "doubles the training faces")
    parser.add_argument("--seed", type=whole_number, default=d["seed"],
                        help="seed of the data split, synthetic faces and training")


def add_estimator_arguments(parser: argparse.ArgumentParser, command: str = "train") -> None:
    """One option per AgeGenderCNN hyperparameter (see :func:`estimator_options`)."""
    for option in estimator_options(command).values():
        text = option.help.replace("%", "%%")
        if option.choices:
            text = f"{text} Choices: {', '.join(option.choices)}."
        parser.add_argument(option.flag, type=option.parse, default=option.default, help=text,
                            metavar=option.name.upper())


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of a tracked training run: the registered model, the experiment, JSON output."""
    parser.add_argument("--registered-model", default="skface", help="registered model that gets a new version")
    parser.add_argument("--experiment", default=None,
                        help="MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else 'skface'); "
                             "ignored under `mlflow run`, which sets it")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def add_configuration_argument(parser: argparse.ArgumentParser) -> None:
    """``--config NAME``: train a named configuration of :mod:`skface.configurations`.

    The parsed arguments then go through :func:`training_arguments`, which
    applies it.
    """
    from ..configurations import CONFIGURATIONS

    parser.add_argument("--config", default="none", choices=["none", *sorted(CONFIGURATIONS)],
                        help="a named configuration (see skface.configurations) that sets the image size, colour and "
                             "every hyperparameter; 'none' takes them from the options")


def load_model(spec: str | None, *, option: str = "--model", with_metadata: bool = False):
    """The fitted pipeline that a command's model option names.

    Parameters
    ----------
    spec : str or None
        None or ``"pretrained"`` for the shipped model, a folder saved by
        ``skface train --save``, or an MLflow model URI
        (``models:/NAME@ALIAS``, ``runs:/RUN_ID/model``).
    option : str, default="--model"
        The option's name, for the error.
    with_metadata : bool, default=False
        Also return what the model was trained on: a folder's saved metadata
        (:func:`skface.network.persistence.read_metadata`), or what the run of
        a logged model logged (:func:`skface.tracking.pyfunc.logged_metadata`).

    Returns
    -------
    pipeline : Pipeline
        Or ``(pipeline, metadata)`` with ``with_metadata``.

    Raises
    ------
    SkfaceError
        Its message starting with ``option``: ``ModelNotFoundError`` when
        ``spec`` is none of these or a URI does not resolve,
        ``PretrainedModelError`` for a folder that holds no saved model.
    """
    from ..exceptions import ModelNotFoundError, SkfaceError
    from ..network.persistence import load_pretrained, read_metadata

    folder = None if spec in (None, "pretrained") else spec
    try:
        if folder is None or Path(folder).expanduser().is_dir():
            pipeline = load_pretrained(folder)
            return (pipeline, read_metadata(folder)) if with_metadata else pipeline
        if ":/" in folder:
            from ..tracking.pyfunc import load_estimator, logged_metadata

            pipeline = load_estimator(folder)
            return (pipeline, logged_metadata(folder)) if with_metadata else pipeline
    except SkfaceError as exc:
        raise type(exc)(f"{option}: {exc}") from None
    raise ModelNotFoundError(f"{option}: {spec!r} is neither a saved model folder (skface train --save) nor an MLflow "
                             "model URI (models:/NAME@ALIAS, runs:/RUN_ID/model).")


def add_init_model_argument(parser: argparse.ArgumentParser) -> None:
    """``--init-model MODEL``: fine-tune a saved model; :func:`training_arguments` loads and checks it.

    :func:`training_arguments` reads which options were typed from
    ``args.argv``, the command's own arguments, which the command sets.
    """
    parser.add_argument("--init-model", default=None, metavar="MODEL",
                        help="go on training the network of a saved model (a folder saved by skface train --save, "
                             "'pretrained' for the shipped one, or an MLflow model URI such as runs:/RUN_ID/model) "
                             "instead of a new one: fine-tuning it on --data. The "
                             "image size, colour and hyperparameters not given are the model's (its epochs too: give "
                             "--epochs and --learning-rate for the fine-tuning); those that shape the network cannot "
                             "change")


def inherit_options(parser: argparse.ArgumentParser, args: argparse.Namespace, saved) -> None:
    """Fine-tuning ``saved`` (a loaded pipeline): the image size, colour and hyperparameters not given on the
    command line (``args.argv``, the command's own arguments) become the model's, so that only what changes needs
    typing. Nothing is taken with ``--config``, which sets them all."""
    if getattr(args, "config", "none") != "none":
        return
    # Parsed again into a namespace where every option holds a marker: those given replace it.
    unset = object()
    probe = argparse.Namespace(**{action.dest: unset for action in parser._actions})
    parser.parse_args(args.argv, namespace=probe)
    values = {**saved[-1].get_params(), "image_size": saved[-2].image_size, "color": saved[-2].color}
    for name in ("image_size", "color", *estimator_options()):
        if getattr(probe, name) is unset:
            setattr(args, name, values[name])


def _initial(parser: argparse.ArgumentParser, init_model: str, kwargs: dict, params: dict, saved, base: dict):
    """The estimator of the saved model ``init_model`` to fine-tune, checked against the configuration that
    ``kwargs`` names and against ``params``, with what it was trained from (``lineage``)."""
    from sklearn.utils import Bunch

    from ..configurations import get_configuration
    from ..network.pipeline import initial_estimator

    config, started = kwargs["config"], base.get("configuration")
    expected = None if config is None else get_configuration(config)["init"]
    if expected and started not in (None, expected):
        parser.error(f"--config {config} fine-tunes a model of configuration {expected}, but {init_model} was "
                     f"trained with {started}; give one trained with --config {expected}.")
    try:
        estimator = initial_estimator(saved, params, image_size=kwargs["image_size"], color=kwargs["color"])
    except ValueError as exc:
        parser.error(f"--init-model {init_model}: {exc}")
    keys = ("run_id", "data", "extra_data", "data_digest", "configuration", "seed", "aligned_views", "train_on_extra",
            "n_train", "train_seconds")
    return Bunch(estimator=estimator, lineage={"path": init_model, **{key: base[key] for key in keys if key in base}})


def training_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace, command: str = "train") -> dict:
    """The typed keyword arguments of the training recipes, from parsed options.

    With ``--config NAME``, the configuration sets the image size, colour,
    its data options (:data:`CONFIGURED_DATA`) and every hyperparameter (those it leaves out keep the options' defaults);
    giving any of those options as well is an error through ``parser``, since
    the configuration would silently override it. This is the one rule for
    ``--config`` in every command.

    Returns
    -------
    kwargs : dict
        ``data``, ``extra_data`` (a list), ``n_synthetic``, ``image_size``,
        ``color``, ``test_split``, ``calibration_split``, ``child_calibration_split``, ``train_on_extra``,
        ``balance_age_bands``, ``aligned_views``, ``seed``, ``config`` (a name or None),
        ``params`` (AgeGenderCNN's hyperparameters) and ``init``: None, or
        with ``--init-model`` the saved model's ``estimator`` to fine-tune
        (:func:`skface.network.pipeline.initial_estimator`) and its
        ``lineage``, what it was trained from, for the record.
    """
    options = estimator_options(command)
    init_model = getattr(args, "init_model", None)
    init_model = None if init_model == "none" else init_model  # MLproject's default
    if init_model is not None:  # loaded and checked before the data is read, which takes a while
        from ..exceptions import SkfaceError
        from ..quiet import import_tensorflow_quietly

        import_tensorflow_quietly()
        try:
            saved, base = load_model(init_model, option="--init-model", with_metadata=True)
        except SkfaceError as exc:
            parser.error(str(exc))
        inherit_options(parser, args, saved)
    kwargs = {name: getattr(args, name) for name in DATA_DEFAULTS}
    kwargs["extra_data"] = [] if kwargs["extra_data"] in ("none", "") else [
        path.strip() for path in kwargs["extra_data"].split(",") if path.strip()]
    params = {name: getattr(args, name) for name in options}
    config = getattr(args, "config", "none")
    kwargs["config"] = None if config == "none" else config
    if kwargs["config"] is not None:
        from ..configurations import get_configuration

        configuration = get_configuration(config)
        if configuration["init"] and init_model is None:
            parser.error(f"--config {config} fine-tunes a model of configuration {configuration['init']}: train "
                         f"that first (skface train --config {configuration['init']} --data ... --save DIR, or a run "
                         f"of it), then give it as --init-model DIR or --init-model runs:/RUN_ID/model (mlflow run: "
                         f"-P init_model=...).")
        given = [name for name in ("image_size", "color", *CONFIGURED_DATA, *options)
                 if getattr(args, name) != parser.get_default(name)]
        if given:
            flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
            parser.error(f"--config {config} sets the image size, colour and every hyperparameter, so {flags} "
                         f"would be ignored; leave out {flags}, or leave out --config and give every option yourself.")
        kwargs["image_size"], kwargs["color"] = configuration["image_size"], configuration["color"]
        kwargs.update(configuration["data"])
        params.update(configuration["estimator"])
    if kwargs["child_calibration_split"] and not (0 < kwargs["calibration_split"] <= kwargs["child_calibration_split"]):
        parser.error(f"--child-calibration-split {kwargs['child_calibration_split']} holds out children on top of "
                     f"--calibration-split, which is {kwargs['calibration_split']}: give a --calibration-split above 0 "
                     "and at most --child-calibration-split, or leave out --child-calibration-split.")
    if kwargs["extra_data"] and not kwargs["train_on_extra"] and not kwargs["calibration_split"]:
        parser.error("--train-on-extra false keeps only the calibration faces of --extra-data, and "
                     "--calibration-split 0 holds out none; give --calibration-split (the one that the model was "
                     "first trained with), or leave out --extra-data.")
    kwargs["params"] = params
    kwargs["init"] = None if init_model is None else _initial(parser, init_model, kwargs, params, saved, base)
    return kwargs


def parse_grid(text: str) -> dict:
    """``"dropout=0.2,0.4;dense_units=64,128"`` -> ``{"dropout": [0.2, 0.4], "dense_units": [64, 128]}``.

    Tuple values (``filters``, ``zoom_tta``) are separated by ``/`` inside a
    choice: ``"filters=16/32,32/64"``.
    """
    options = estimator_options("sweep")
    grid = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        if "=" not in part:
            raise ValueError(f"grid entry {part!r} must read name=value1,value2; e.g. 'dropout=0.2,0.4'.")
        name, values = (s.strip() for s in part.split("=", 1))
        if name not in options:
            raise ValueError(f"grid names an unknown hyperparameter {name!r}; choose from {sorted(options)}.")
        try:
            grid[name] = [options[name].parse(v.replace("/", ",")) for v in values.split(",")]
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise ValueError(f"grid values of {name!r} are not valid ({exc}), got {values!r}.") from None
    if not grid:
        raise ValueError("the grid is empty; pass e.g. 'dropout=0.2,0.4;dense_units=64,128'.")
    return grid
