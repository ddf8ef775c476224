"""Saving and loading a fitted ``Pipeline(ImagePreprocessor, AgeGenderCNN)`` without pickle.

A saved model is a folder holding ``model.keras`` (the network) and
``skface.json`` (the preprocessing and estimator parameters and the fitted
attributes that are not in the network).

A model folder is data that may come from anywhere (a registry, a download),
so :func:`load_pretrained` checks every entry of ``skface.json``, against the
bounds below and against the network, before it builds anything: a damaged or
tampered folder is a :class:`PretrainedModelError` that names the file and
the problem, never a model that exhausts the host at its first prediction.
"""

from __future__ import annotations

import json
import os
import reprlib
import zipfile
from importlib import resources
from numbers import Integral, Real
from pathlib import Path

from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from ..data.imaging import MAX_PIXELS
from ..data.preprocessing import ImagePreprocessor
from ..exceptions import PretrainedModelError
from .estimator import AgeGenderCNN

FORMAT_VERSION = 1
MODEL_FILE = "model.keras"
PARAMS_FILE = "skface.json"

#: Largest side, in pixels, of the square images that a saved network may take (the shipped one takes 80,
#: UTKFace's crops are 200).
MAX_IMAGE_SIDE = 512
#: Largest ``max_pixels`` that a saved model may give its preprocessor or face aligner, 4x the default;
#: None (no decompression-bomb guard) is refused.
MAX_PIXELS_LIMIT = 4 * MAX_PIXELS
#: Largest ``detection_side`` of a saved face aligner; None (search at full resolution) is refused.
MAX_DETECTION_SIDE = 4096
#: Largest ``skface.json`` that is read (the shipped one is 27 kB).
MAX_PARAMS_BYTES = 16 * 2**20
#: Largest network, uncompressed, that is read from ``model.keras`` (the shipped one is 8 MB).
MAX_NETWORK_BYTES = 2**30
#: Most calibration faces whose conformity scores skface.json holds.
MAX_CALIBRATION_FACES = 100_000
#: Most numbers in a fitted attribute that skface.json holds without an entry in FITTED_ATTRIBUTES.
MAX_EXTRA_FITTED_VALUES = 1_000_000

# The sections of skface.json, and whether each is required.
_SECTIONS = {"format": True, "steps": False, "aligner": False, "preprocessor": True, "estimator": True,
             "fitted": True, "metadata": False}
_KERAS_MEMBERS = ("config.json", "model.weights.h5")


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _image_shape(value) -> tuple[int, int, int]:
    if not (isinstance(value, list) and len(value) == 3 and all(_is_int(v) for v in value)
            and 1 <= value[0] <= MAX_IMAGE_SIDE and value[1] == value[0] and value[2] in (1, 3)):
        raise ValueError(f"must be [side, side, channels] with a side of 1 to {MAX_IMAGE_SIDE} pixels and 1 or 3 "
                         f"channels, got {reprlib.repr(value)}")
    return tuple(value)


def _positive_int(value) -> int:
    if not (_is_int(value) and value >= 1):
        raise ValueError(f"must be a positive integer, got {reprlib.repr(value)}")
    return int(value)


def _conformity_scores(value) -> dict:
    import numpy as np

    from ..evaluation import AGE_BANDS
    from .calibration import ALL_FACES

    groups = {ALL_FACES, *(band for band, _, _ in AGE_BANDS)}
    if not (isinstance(value, dict) and ALL_FACES in value and set(value) <= groups
            and all(isinstance(scores, list) and 1 <= len(scores) <= MAX_CALIBRATION_FACES
                    and all(_is_number(v) and 0 <= v < float("inf") for v in scores) for scores in value.values())):
        raise ValueError(f"must map {sorted(groups)} ('{ALL_FACES}' required) to lists of 1 to "
                         f"{MAX_CALIBRATION_FACES:,} finite numbers >= 0, got {reprlib.repr(value)}")
    return {group: np.sort(np.asarray(scores, dtype=np.float64)) for group, scores in value.items()}


def _temperature(value) -> float:
    from .calibration import TEMPERATURE_RANGE

    low, high = TEMPERATURE_RANGE
    if not (_is_number(value) and low <= value <= high):
        raise ValueError(f"must be a number from {low} to {high}, got {reprlib.repr(value)}")
    return float(value)


def _history(value) -> dict:
    if not (isinstance(value, dict) and all(isinstance(values, list) and all(_is_number(v) for v in values)
                                            for values in value.values())):
        raise ValueError(f"must map each metric's name to a list of numbers, got {reprlib.repr(value)}")
    return {name: [float(v) for v in values] for name, values in value.items()}


#: The fitted attributes of :class:`AgeGenderCNN` that are not in the network: name -> (check, required).
#: ``check`` takes the JSON value and returns the attribute's value, or raises ValueError saying what it must
#: be. :func:`save_pretrained` writes each that the estimator has, :func:`load_pretrained` checks and restores
#: each, and refuses a folder without a required one; an attribute without an entry here is restored as it
#: is when it is well-formed (see ``_extra_fitted``), so a new attribute needs only its entry.
FITTED_ATTRIBUTES = {
    "input_shape_": (_image_shape, True),
    "n_features_in_": (_positive_int, True),
    "n_epochs_": (_positive_int, True),
    "history_": (_history, True),
    "age_conformity_scores_": (_conformity_scores, False),
    "gender_temperature_": (_temperature, False),
}
#: Parameters that a step gained after format 1: a file saved before them may lack them (they keep their
#: defaults); every other parameter must be there.
_ADDED_PARAMETERS = {"aligner": ("min_face_pixels",)}


def _extra_fitted(name: str, value):
    """A fitted attribute without an entry in FITTED_ATTRIBUTES, restored as it is when it is well-formed:
    a public name ending in ``_`` that is not one of the estimator's, holding numbers (in lists or under
    string keys, at most MAX_EXTRA_FITTED_VALUES of them)."""
    if not (name.isidentifier() and name.endswith("_") and not name.startswith("_") and name != "model_"
            and not hasattr(AgeGenderCNN, name)):
        raise ValueError(f"{name!r} is not a fitted attribute's name (public, ending in '_', not one of the "
                         "estimator's own)")
    count, pending = 0, [value]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict) and all(isinstance(key, str) for key in item):
            pending.extend(item.values())
        elif not _is_number(item):
            raise ValueError(f"{name} must hold numbers, in lists or under names, got {reprlib.repr(item)} in it")
        else:
            count += 1
        if count + len(pending) > MAX_EXTRA_FITTED_VALUES:
            raise ValueError(f"{name} holds more than {MAX_EXTRA_FITTED_VALUES:,} values")
    return value


def _to_json(value):
    """A fitted attribute as JSON: NumPy arrays and numbers as lists and Python numbers, tuples as lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {name: _to_json(item) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(item) for item in value]
    return value


def _check_keys(section: str, found: dict, expected, required=None) -> None:
    """``found`` has no key outside ``expected`` (None: any) and every key of ``required`` (default: expected)."""
    unknown = [] if expected is None else sorted(set(found) - set(expected))
    missing = [name for name in (expected if required is None else required) if name not in found]
    problems = ([f"has unknown keys {reprlib.repr(unknown)}"] if unknown else []) + (
        [f"lacks the keys {missing}"] if missing else [])
    if problems:
        allowed = "" if expected is None else f" (expected {sorted(expected)})"
        raise ValueError(f"the section {section!r} {' and '.join(problems)}{allowed}")


def _check_guard(where: str, max_pixels) -> None:
    if not (_is_int(max_pixels) and 1 <= max_pixels <= MAX_PIXELS_LIMIT):
        raise ValueError(
            f"{where}.max_pixels must be an integer from 1 to {MAX_PIXELS_LIMIT:,} (the decompression-bomb guard "
            f"of a saved model is always on), got {reprlib.repr(max_pixels)}; set it, e.g. to {MAX_PIXELS:,}"
        )


def _tuples(params: dict) -> dict:
    # JSON has lists where the steps' parameters are tuples (filters, zoom_tta, tight_crop_tolerance).
    return {name: tuple(value) if isinstance(value, list) else value for name, value in params.items()}


def _checked(section: str, check, *args):
    """``check(*args)``, its ValueError (a scikit-learn InvalidParameterError too) prefixed with the section."""
    try:
        return check(*args)
    except ValueError as exc:
        raise ValueError(f"{section}: {str(exc).rstrip('.')}") from None


def _built_steps(state) -> list[tuple[str, object]]:
    """The pipeline's steps from a parsed ``skface.json``, every entry checked first (the network is not
    loaded); a ValueError (TypeError for a file that is no JSON object) names the entry and the problem."""
    if not isinstance(state, dict):
        raise TypeError(f"it must hold a JSON object, got {type(state).__name__}")
    if not (_is_int(state.get("format")) and state["format"] == FORMAT_VERSION):
        raise ValueError(f"it has format {reprlib.repr(state.get('format'))}, this skface reads format "
                         f"{FORMAT_VERSION}")
    _check_keys("top level", state, _SECTIONS, [name for name, required in _SECTIONS.items() if required])
    for name in ("aligner", "preprocessor", "estimator", "fitted", "metadata"):
        if name in state and not isinstance(state[name], dict):
            raise ValueError(f"the section {name!r} must be a JSON object, got {reprlib.repr(state[name])}")

    fitted = state["fitted"]
    _check_keys("fitted", fitted, None, [name for name, (_, required) in FITTED_ATTRIBUTES.items() if required])
    attributes = {}
    for name, value in fitted.items():
        if name in FITTED_ATTRIBUTES:
            attributes[name] = _checked(f"fitted.{name}", FITTED_ATTRIBUTES[name][0], value)
        else:
            attributes[name] = _checked("fitted", _extra_fitted, name, value)
    if ("age_conformity_scores_" in attributes) != ("gender_temperature_" in attributes):
        raise ValueError("fitted.age_conformity_scores_ and fitted.gender_temperature_ come together "
                         "(AgeGenderCNN.conformalize sets both); one of them is missing")
    side, _, channels = attributes["input_shape_"]
    if attributes["n_features_in_"] != side:
        raise ValueError(f"fitted.n_features_in_ is {attributes['n_features_in_']}, but the images are {side} "
                         "pixels high (fitted.input_shape_)")

    params = state["estimator"]
    expected = AgeGenderCNN().get_params()
    # Files saved before warm_start existed lack it; its default (False) is what they were.
    _check_keys("estimator", params, expected, [name for name in expected if name != "warm_start"])
    if params["callbacks"] is not None:
        raise ValueError(f"estimator.callbacks must be null, got {reprlib.repr(params['callbacks'])}")
    estimator = AgeGenderCNN(**_tuples(params))
    _checked("estimator", estimator._validate_params)
    _checked("estimator", estimator._check_params_beyond_constraints)
    for name, value in attributes.items():
        setattr(estimator, name, value)

    preprocessing = state["preprocessor"]
    _check_keys("preprocessor", preprocessing, ImagePreprocessor().get_params())
    preprocessor = _checked("preprocessor", ImagePreprocessor(**preprocessing).fit)
    _check_guard("preprocessor", preprocessor.max_pixels)
    color = "grayscale" if channels == 1 else "rgb"
    if (preprocessor.image_size, preprocessor.color.lower()) != (side, color):
        raise ValueError(
            f"preprocessor.image_size and color are {preprocessor.image_size!r} and {preprocessor.color!r}, but the "
            f"network takes {side}x{side} images with {channels} channel{'s' if channels > 1 else ''} "
            f"(fitted.input_shape_), which need image_size={side}, color={color!r}"
        )
    steps = [preprocessor, estimator]

    if "aligner" in state:
        from ..faces import FaceAligner

        aligner_params = state["aligner"]
        expected = FaceAligner().get_params()
        _check_keys("aligner", aligner_params, expected,
                    [name for name in expected if name not in _ADDED_PARAMETERS["aligner"]])
        aligner = _checked("aligner", FaceAligner(**_tuples(aligner_params)).fit)
        _check_guard("aligner", aligner.max_pixels)
        if not (_is_int(aligner.detection_side) and aligner.detection_side <= MAX_DETECTION_SIDE):
            raise ValueError(f"aligner.detection_side must be an integer of at most {MAX_DETECTION_SIDE} pixels in "
                             f"a saved model, got {reprlib.repr(aligner.detection_side)}")
        steps.insert(0, aligner)

    names = state.get("steps", ["faces", "preprocess", "model"][-len(steps):])
    reserved = Pipeline([]).get_params(deep=False)
    if not (isinstance(names, list) and len(names) == len(steps)
            and all(isinstance(n, str) and n.isidentifier() and "__" not in n and n not in reserved for n in names)
            and len(set(names)) == len(names)):
        raise ValueError(f"steps must name the {len(steps)} steps with distinct identifiers without '__', got "
                         f"{reprlib.repr(names)}")
    return list(zip(names, steps))


def _check_network_file(model_file: Path, input_shape: tuple[int, ...]) -> None:
    """``model.keras`` is a Keras zip archive of bounded size whose input is ``input_shape``, read from its
    configuration without building the network; a ValueError says what is wrong."""
    if not zipfile.is_zipfile(model_file):
        raise ValueError("it is not a Keras .keras file (a zip archive)")
    with zipfile.ZipFile(model_file) as archive:
        members = {info.filename: info for info in archive.infolist()}
        missing = [name for name in _KERAS_MEMBERS if name not in members]
        if missing:
            raise ValueError(f"it is a zip archive without {', '.join(missing)}, so not a Keras .keras file")
        size = sum(info.file_size for info in members.values())
        if size > MAX_NETWORK_BYTES:
            raise ValueError(f"it holds {size:,} bytes uncompressed, over the {MAX_NETWORK_BYTES:,} that a "
                             "network is read up to")
        try:
            config = json.loads(archive.read("config.json"))
            inputs = [layer["config"]["batch_shape"] for layer in config["config"]["layers"]
                      if layer["class_name"] == "InputLayer"]
        except (KeyError, TypeError, ValueError, RecursionError, zipfile.BadZipFile) as exc:
            raise ValueError(f"its config.json is not a Keras functional model's ({type(exc).__name__}: {exc})") from None
    if inputs != [[None, *input_shape]]:
        raise ValueError(f"its network takes inputs {reprlib.repr(inputs)}, but skface.json says images of shape "
                         f"{list(input_shape)} (fitted.input_shape_)")


def default_pretrained_dir() -> Path:
    """Folder of the pretrained model shipped inside the package."""
    return Path(str(resources.files("skface") / "pretrained"))


def read_metadata(path: str | os.PathLike | None = None) -> dict:
    """The ``metadata`` that :func:`save_pretrained` kept beside a model (training data, test figures, ...).

    Parameters
    ----------
    path : str or path-like, optional
        A folder written by :func:`save_pretrained`; by default the shipped
        pretrained model's.

    Returns
    -------
    metadata : dict
        Empty when none was kept.
    """
    params_file = (default_pretrained_dir() if path is None else Path(path).expanduser()) / PARAMS_FILE
    try:
        return dict(json.loads(params_file.read_text()).get("metadata") or {})
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PretrainedModelError(f"cannot read the metadata of {params_file} ({exc}); save the model again.") from exc


def save_pretrained(pipeline: Pipeline, path: str | os.PathLike, *, metadata: dict | None = None,
                    quantize: str | None = None) -> Path:
    """Save a fitted ``Pipeline([FaceAligner,] ImagePreprocessor, AgeGenderCNN)`` to a folder.

    Parameters
    ----------
    pipeline : Pipeline
        An optional :class:`skface.faces.FaceAligner`, an
        :class:`ImagePreprocessor`, then a fitted :class:`AgeGenderCNN`,
        within the bounds that :func:`load_pretrained` checks (the
        decompression-bomb guard ``max_pixels`` on, ...).
    path : str or path-like
        Folder to write ``model.keras`` and ``skface.json`` into; created if
        missing, and the two files are replaced if present.
    metadata : dict, optional
        JSON-serialisable facts to keep beside the model (training data,
        validation figures, ...).
    quantize : {None, "int8"}, default=None
        Store the dense layers' weights as int8 with a scale per output unit
        (see :func:`skface.network.architecture.save_network`): the shipped
        model is stored so, at a third of the size, with the same figures to
        a hundredth of a year and a tenth of a point.

    Returns
    -------
    path : pathlib.Path
        The folder written.

    Raises
    ------
    ValueError
        If a step's parameters are outside what :func:`load_pretrained`
        accepts; the message names the parameter.
    """
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) not in (2, 3):
        raise TypeError(
            "save_pretrained expects Pipeline([(name, FaceAligner(...)),] (name, ImagePreprocessor(...)), "
            f"(name, AgeGenderCNN(...))]), got {pipeline!r}."
        )
    aligner = pipeline[0] if len(pipeline.steps) == 3 else None
    preprocessor, estimator = pipeline[-2], pipeline[-1]
    if aligner is not None:
        from ..faces import FaceAligner
    if (not isinstance(preprocessor, ImagePreprocessor) or not isinstance(estimator, AgeGenderCNN)
            or (aligner is not None and not isinstance(aligner, FaceAligner))):
        raise TypeError(
            "save_pretrained expects an optional FaceAligner, an ImagePreprocessor, then an AgeGenderCNN, got "
            f"{', '.join(type(step).__name__ for _, step in pipeline.steps)}."
        )
    check_is_fitted(estimator, "model_")
    params = estimator.get_params()
    # Callbacks, and whether the next fit goes on from this network, belong to a training session, not to the model.
    params["callbacks"], params["warm_start"] = None, False
    if not (params["random_state"] is None or isinstance(params["random_state"], int)):
        params["random_state"] = None
    state = {
        "format": FORMAT_VERSION,
        "steps": [name for name, _ in pipeline.steps],
        **({"aligner": aligner.get_params()} if aligner is not None else {}),
        "preprocessor": preprocessor.get_params(),
        "estimator": params,
        "fitted": {name: _to_json(getattr(estimator, name)) for name in FITTED_ATTRIBUTES if hasattr(estimator, name)},
        "metadata": metadata or {},
    }
    state = json.loads(json.dumps(state))  # exactly what load_pretrained will read
    try:
        _built_steps(state)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"this pipeline cannot be saved as it is, since load_pretrained would refuse it: {exc}.") \
            from None
    folder = Path(path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    from .architecture import save_network

    save_network(estimator.model_, folder / MODEL_FILE, quantize=quantize)
    (folder / PARAMS_FILE).write_text(json.dumps(state, indent=2) + "\n")
    return folder


def load_pretrained(path: str | os.PathLike | None = None) -> Pipeline:
    """Load a fitted ``Pipeline([FaceAligner,] ImagePreprocessor, AgeGenderCNN)``.

    Parameters
    ----------
    path : str or path-like, optional
        A folder written by :func:`save_pretrained`. By default, the model
        shipped with the package: trained on UTKFace (non-commercial research
        use only), described in ``MODEL_CARD.md``.

    Returns
    -------
    pipeline : Pipeline
        Predicts ``[age, gender]`` from file paths, encoded bytes, PIL
        images or arrays. The shipped model starts with a
        :class:`skface.faces.FaceAligner`, so that it answers for whole
        photos (the most prominent face of each) and tight face crops alike.

    Raises
    ------
    PretrainedModelError
        If the folder lacks the model or its parameters, or either is
        damaged or outside the bounds a saved model may set (an image size
        that is not the network's, more than 8 zoom views, the
        decompression-bomb guard off, unknown or missing keys, values of the
        wrong type, a ``model.keras`` that Keras cannot load); the message
        names the file and the problem. Everything in ``skface.json`` is
        checked before the network is loaded.

    Examples
    --------
    >>> from skface import load_pretrained
    >>> model = load_pretrained()  # doctest: +SKIP
    >>> model.predict(["photo.jpg"])  # doctest: +SKIP
    array([[31.2,  1. ]])
    """
    from .architecture import load_network

    folder = default_pretrained_dir() if path is None else Path(path).expanduser()
    model_file, params_file = folder / MODEL_FILE, folder / PARAMS_FILE
    if not model_file.is_file() or not params_file.is_file():
        if path is None:
            raise PretrainedModelError(
                f"the pretrained model is missing from this installation (expected {MODEL_FILE} and "
                f"{PARAMS_FILE} in {folder}); reinstall skface, or train one with "
                "`skface train --config narrow80aligned --data PATH --save DIR` and load it with load_pretrained(DIR)."
            )
        raise PretrainedModelError(
            f"{folder} holds no saved skface model: expected {MODEL_FILE} and {PARAMS_FILE} "
            "as written by skface.save_pretrained."
        )
    fix = "save the model again with skface.save_pretrained, or get the folder again from where it came"
    if params_file.stat().st_size > MAX_PARAMS_BYTES:
        raise PretrainedModelError(f"{params_file} has {params_file.stat().st_size:,} bytes, over the "
                                   f"{MAX_PARAMS_BYTES:,} that it is read up to; {fix}.")
    try:
        state = json.loads(params_file.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise PretrainedModelError(f"{params_file} is not valid JSON ({exc}); {fix}.") from exc
    try:
        steps = _built_steps(state)
    except (TypeError, ValueError) as exc:
        raise PretrainedModelError(f"{params_file} is not a valid skface model: {exc}; {fix}.") from None
    estimator = steps[-1][1]
    try:
        _check_network_file(model_file, estimator.input_shape_)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise PretrainedModelError(f"{model_file} is not this model's network: {exc}; {fix}.") from None
    try:
        network = load_network(model_file)
    except Exception as exc:  # whatever a damaged archive makes Keras raise, named with the file
        raise PretrainedModelError(f"Keras cannot load {model_file} ({type(exc).__name__}: {exc}); {fix}.") from exc
    outputs = set(network.output) if isinstance(network.output, dict) else set()
    if tuple(network.input_shape[1:]) != estimator.input_shape_ or not {"age", "gender"} <= outputs:
        raise PretrainedModelError(
            f"{model_file} holds a network with input {network.input_shape} and outputs {sorted(outputs)}, "
            f"not one taking images of shape {estimator.input_shape_} with outputs 'age' and 'gender'; {fix}."
        )
    estimator.model_ = network
    return Pipeline(steps)
