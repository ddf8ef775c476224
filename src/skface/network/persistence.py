"""Saving and loading a fitted ``Pipeline(ImagePreprocessor, AgeGenderCNN)`` without pickle.

A saved model is a folder holding ``model.keras`` (the network) and
``skface.json`` (the preprocessing and estimator parameters and the fitted
attributes that are not in the network).
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from ..data.preprocessing import ImagePreprocessor
from ..exceptions import PretrainedModelError
from .estimator import AgeGenderCNN

FORMAT_VERSION = 1
MODEL_FILE = "model.keras"
PARAMS_FILE = "skface.json"


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
    params_file = (default_pretrained_dir() if path is None else Path(path)) / PARAMS_FILE
    try:
        return dict(json.loads(params_file.read_text()).get("metadata") or {})
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PretrainedModelError(f"cannot read the metadata of {params_file} ({exc}); save the model again.") from exc


def save_pretrained(pipeline: Pipeline, path: str | os.PathLike, *, metadata: dict | None = None) -> Path:
    """Save a fitted ``Pipeline([FaceAligner,] ImagePreprocessor, AgeGenderCNN)`` to a folder.

    Parameters
    ----------
    pipeline : Pipeline
        An optional :class:`skface.faces.FaceAligner`, an
        :class:`ImagePreprocessor`, then a fitted :class:`AgeGenderCNN`.
    path : str or path-like
        Folder to write ``model.keras`` and ``skface.json`` into; created if
        missing, and the two files are replaced if present.
    metadata : dict, optional
        JSON-serialisable facts to keep beside the model (training data,
        validation figures, ...).

    Returns
    -------
    path : pathlib.Path
        The folder written.
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
    params["callbacks"] = None  # callbacks belong to a training session, not to the model
    if not (params["random_state"] is None or isinstance(params["random_state"], int)):
        params["random_state"] = None
    state = {
        "format": FORMAT_VERSION,
        "steps": [name for name, _ in pipeline.steps],
        **({"aligner": aligner.get_params()} if aligner is not None else {}),
        "preprocessor": preprocessor.get_params(),
        "estimator": params,
        "fitted": {
            "input_shape_": list(estimator.input_shape_),
            "n_features_in_": int(estimator.n_features_in_),
            "n_epochs_": int(estimator.n_epochs_),
            "history_": estimator.history_,
            **({"age_conformity_scores_": [round(float(v), 5) for v in estimator.age_conformity_scores_],
                "gender_temperature_": float(estimator.gender_temperature_)}
               if hasattr(estimator, "age_conformity_scores_") else {}),
        },
        "metadata": metadata or {},
    }
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    from .architecture import save_network

    save_network(estimator.model_, folder / MODEL_FILE)
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
        If the folder lacks the model or its parameters.

    Examples
    --------
    >>> from skface import load_pretrained
    >>> model = load_pretrained()  # doctest: +SKIP
    >>> model.predict(["photo.jpg"])  # doctest: +SKIP
    array([[31.2,  1. ]])
    """
    from .architecture import load_network

    folder = default_pretrained_dir() if path is None else Path(path)
    model_file, params_file = folder / MODEL_FILE, folder / PARAMS_FILE
    if not model_file.is_file() or not params_file.is_file():
        if path is None:
            raise PretrainedModelError(
                f"the pretrained model is missing from this installation (expected {MODEL_FILE} and "
                f"{PARAMS_FILE} in {folder}); reinstall skface, or train one with "
                "`skface train --config narrow80 --data PATH --save DIR` and load it with load_pretrained(DIR)."
            )
        raise PretrainedModelError(
            f"{folder} holds no saved skface model: expected {MODEL_FILE} and {PARAMS_FILE} "
            "as written by skface.save_pretrained."
        )
    try:
        state = json.loads(params_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PretrainedModelError(f"{params_file} is not valid JSON ({exc}); save the model again.") from exc
    if state.get("format") != FORMAT_VERSION:
        raise PretrainedModelError(
            f"{params_file} has format {state.get('format')!r}, this skface reads format "
            f"{FORMAT_VERSION}; save the model again with this version."
        )
    params = dict(state["estimator"])
    # JSON has lists where the estimator's parameters are tuples (filters, zoom_tta).
    params = {name: tuple(value) if isinstance(value, list) else value for name, value in params.items()}
    estimator = AgeGenderCNN(**params)
    fitted = state["fitted"]
    estimator.input_shape_ = tuple(fitted["input_shape_"])
    estimator.n_features_in_ = fitted["n_features_in_"]
    estimator.n_epochs_ = fitted["n_epochs_"]
    estimator.history_ = fitted["history_"]
    if "age_conformity_scores_" in fitted:
        import numpy as np

        estimator.age_conformity_scores_ = np.sort(np.asarray(fitted["age_conformity_scores_"], dtype=np.float64))
        estimator.gender_temperature_ = float(fitted["gender_temperature_"])
    estimator.model_ = load_network(model_file)
    steps = [ImagePreprocessor(**state["preprocessor"]), estimator]
    if "aligner" in state:
        from ..faces import FaceAligner

        steps.insert(0, FaceAligner(**{name: tuple(value) if isinstance(value, list) else value
                                       for name, value in state["aligner"].items()}))
    names = state.get("steps", ["faces", "preprocess", "model"][-len(steps):])
    return Pipeline(list(zip(names, steps)))
