"""The MLflow pyfunc model that every training run logs, and that ``mlflow models serve`` serves.

Request: a column ``image`` of base64-encoded image files (JPEG, PNG, ...),
sent as ``dataframe_split``, ``dataframe_records`` or ``inputs``; line breaks
in the base64 text are ignored (``base64`` without ``-w0`` and Spark's
``base64()`` wrap it every 76 characters). In process, raw ``bytes`` work
too. Response, one row per input row: ``age`` (years), ``age_low`` and
``age_high`` (the range that holds the true age 80% of the time; null for a
model that was not calibrated), ``gender`` ("male" or "female"),
``gender_probability`` (of the predicted gender) and ``error`` (empty when
the row is fine). A bad row gets ``error`` set and null predictions; the
other rows are answered.

One request costs at most what the model's configuration allows
(:data:`REQUEST_LIMITS`): rows beyond ``max_rows``, and each row that would
take the pixels decoded for the request over ``max_request_pixels``, get an
error each instead of an answer. The limits are written into the model's
``model_config`` when it is logged, and a server overrides them with the
environment variable ``MLFLOW_PYFUNC_INFERENCE_CONFIG``, e.g.
``'{"max_rows": 32}'``. No response carries a stack trace: a failure of the
whole request is logged by the server and answered with a short message.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import logging
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE

from ..exceptions import ImageDecodeError, ModelNotFoundError
from ..network.pipeline import ROW_FIELDS, predict_rows

IMAGE_COLUMN = "image"
ARTIFACT_KEY = "skface_model"

#: What one request may cost the served model, by default: the rows answered (the others get an error each),
#: and the pixels decoded over all its rows (a row that would take the total over gets an error), so that a
#: request takes seconds, not minutes: 100 megapixels are two 50-megapixel images, about 6 s on a 2-core CPU.
REQUEST_LIMITS = {"max_rows": 256, "max_request_pixels": 100_000_000}

_logger = logging.getLogger(__name__)

# What the served model needs; pinned to the versions it was trained with.
_REQUIREMENTS = ("tensorflow", "keras", "scikit-learn", "numpy", "pandas", "pillow", "mlflow")


class AgeGenderModel(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper of a saved ``Pipeline(ImagePreprocessor, AgeGenderCNN)``.

    The pipeline is kept as an artifact written by
    :func:`skface.save_pretrained` (a ``.keras`` file plus JSON), so the
    network is never pickled, and the preprocessing parameters travel with
    it. Use :func:`log_model` rather than instantiating it directly.
    """

    def load_context(self, context):
        from ..network.persistence import load_pretrained

        self.use(load_pretrained(context.artifacts[ARTIFACT_KEY]), limits=context.model_config)
        # Warm up: the first call builds TensorFlow's graph; do it at load, not on a request.
        estimator = self.pipeline_[-1]
        estimator.predict(np.zeros((1, *estimator.input_shape_), dtype=np.float32))

    def use(self, pipeline, limits: dict | None = None):
        """Serve this fitted ``Pipeline(ImagePreprocessor, AgeGenderCNN)`` within ``limits`` (keys of
        :data:`REQUEST_LIMITS`; the others are ignored, a missing one takes its default); returns self."""
        self.pipeline_ = pipeline
        self.limits_ = _request_limits(limits)
        return self

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """Predict age and gender for each row of ``model_input``."""
        crops = (params or {}).get("crops", False)
        if not isinstance(crops, (bool, np.bool_)):
            raise _bad_request(f"the parameter 'crops' must be true or false, got {crops!r}.")
        images = _image_column(model_input)
        try:
            rows = predict_rows(self.pipeline_, images, read=_to_bytes, crops=bool(crops),
                                max_items=self.limits_["max_rows"],
                                max_total_pixels=self.limits_["max_request_pixels"])
        except Exception as exc:  # not one image's fault (those are rows' errors): the log gets the trace
            _logger.exception("skface: a request of %d rows failed", len(images))
            raise MlflowException(f"the model failed on this request ({type(exc).__name__}); the server's log "
                                  "has the details.", error_code=INTERNAL_ERROR) from None
        # Object columns keep None for bad rows, which JSON sends as null (a float column would send NaN).
        return pd.DataFrame(rows, columns=list(ROW_FIELDS), dtype=object)


def _request_limits(config: dict | None) -> dict:
    """:data:`REQUEST_LIMITS` updated by a model configuration, each checked to be a positive integer."""
    limits = {name: (config or {}).get(name, default) for name, default in REQUEST_LIMITS.items()}
    for name, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(
                f"the served model's {name} must be a positive integer, got {value!r}; set it with "
                f"MLFLOW_PYFUNC_INFERENCE_CONFIG='{{\"{name}\": {REQUEST_LIMITS[name]}}}' or leave it out."
            )
    return {name: int(value) for name, value in limits.items()}


def _bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _image_column(model_input) -> list:
    if isinstance(model_input, pd.DataFrame):
        if IMAGE_COLUMN not in model_input.columns:
            raise _bad_request(
                f"the input has no {IMAGE_COLUMN!r} column (got {list(model_input.columns)}); send "
                f'{{"dataframe_split": {{"columns": ["{IMAGE_COLUMN}"], "data": [["<base64 image>"]]}}}} '
                f'or {{"inputs": {{"{IMAGE_COLUMN}": ["<base64 image>"]}}}}.'
            )
        return list(model_input[IMAGE_COLUMN])
    if isinstance(model_input, dict) and IMAGE_COLUMN in model_input:
        values = model_input[IMAGE_COLUMN]
        return list(values) if isinstance(values, (list, tuple, np.ndarray, pd.Series)) else [values]
    if isinstance(model_input, (list, tuple)):
        return list(model_input)
    raise _bad_request(
        f"expected a table with an {IMAGE_COLUMN!r} column of base64-encoded images, got "
        f"{type(model_input).__name__}."
    )


def _to_bytes(value) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("data:") and "," in text:  # a data URL: data:image/jpeg;base64,....
            text = text.split(",", 1)[1]
        try:
            # Whitespace is not base64 data: line breaks of wrapped base64 (every 76 characters) go first.
            return base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ImageDecodeError(f"the image is not valid base64 ({exc}); encode the file's bytes in base64.") from None
    if value is None or (isinstance(value, float) and np.isnan(value)):
        raise ImageDecodeError("the image is empty (null); send the base64 of an image file.")
    raise ImageDecodeError(
        f"expected a base64 string or bytes, got {type(value).__name__}; send the base64 of an image file."
    )


def encode_image(source) -> str:
    """Base64 text of an image file (a path or bytes), ready for a REST request."""
    if isinstance(source, (bytes, bytearray)):
        return base64.b64encode(bytes(source)).decode("ascii")
    return base64.b64encode(Path(source).read_bytes()).decode("ascii")


def _pip_requirements() -> list[str]:
    requirements = []
    for name in _REQUIREMENTS:
        try:
            requirements.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            requirements.append(name)
    return requirements


def _example_image(image_size: int) -> bytes:
    from PIL import Image

    from ..data.synthetic import make_synthetic_faces

    X, _ = make_synthetic_faces(1, image_size=max(image_size, 32), color="rgb", random_state=0)
    buf = io.BytesIO()
    Image.fromarray(X[0]).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@contextlib.contextmanager
def _model_files(pipeline, limits: dict | None):
    """The keyword arguments that MLflow's ``log_model`` and ``save_model`` take for a skface pipeline.

    The pipeline is saved without pickle (:func:`skface.save_pretrained`),
    and the model's code is the skface package without its shipped
    pretrained weights: a model carries only its own network.
    """
    from mlflow.models import infer_signature

    from ..network.persistence import save_pretrained

    example = pd.DataFrame({IMAGE_COLUMN: [encode_image(_example_image(pipeline[-1].input_shape_[0]))]})
    output = AgeGenderModel().use(pipeline).predict(None, example)
    package = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as folder:
        code = shutil.copytree(package, Path(folder) / "code" / package.name,
                               ignore=shutil.ignore_patterns("pretrained", "__pycache__"))
        yield {
            "python_model": str(Path(__file__).with_name("mlflow_model.py")),
            "artifacts": {ARTIFACT_KEY: str(save_pretrained(pipeline, Path(folder) / ARTIFACT_KEY))},
            "code_paths": [str(code)],
            "signature": infer_signature(example, output, params={"crops": False}),
            "input_example": example,
            "pip_requirements": _pip_requirements(),
            "model_config": _request_limits(limits),
        }


def log_model(pipeline, *, name: str = "model", registered_model_name: str | None = None,
              limits: dict | None = None):
    """Log a fitted ``Pipeline(ImagePreprocessor, AgeGenderCNN)`` as an MLflow pyfunc model.

    Parameters
    ----------
    pipeline : Pipeline
        An :class:`ImagePreprocessor` then a fitted :class:`AgeGenderCNN`.
    name : str, default="model"
        Name of the logged model in the run.
    registered_model_name : str, optional
        Also register it under this name.
    limits : dict, optional
        What one request may cost the served model: ``max_rows`` and
        ``max_request_pixels``, each by default that of
        :data:`REQUEST_LIMITS`. Kept as the model's ``model_config``.

    Returns
    -------
    model_info : mlflow.models.model.ModelInfo
    """
    with _model_files(pipeline, limits) as files:
        return mlflow.pyfunc.log_model(name=name, registered_model_name=registered_model_name, **files)


def save_model(pipeline, path: str | Path, *, limits: dict | None = None) -> Path:
    """Write a fitted pipeline as an MLflow model folder, which ``mlflow models serve -m PATH`` serves.

    Parameters
    ----------
    pipeline : Pipeline
        An :class:`ImagePreprocessor` then a fitted :class:`AgeGenderCNN`.
    path : str or path-like
        The folder to create; it must not exist yet.
    limits : dict, optional
        As in :func:`log_model`.

    Returns
    -------
    path : pathlib.Path
    """
    with _model_files(pipeline, limits) as files:
        mlflow.pyfunc.save_model(path=str(path), **files)
    return Path(path)


def load_estimator(model_uri: str):
    """Load a logged skface model as its fitted scikit-learn ``Pipeline``.

    Parameters
    ----------
    model_uri : str
        Any MLflow model URI: ``runs:/<run_id>/model``,
        ``models:/skface@champion``, ``models:/<model_id>``.

    Returns
    -------
    pipeline : Pipeline
        ``ImagePreprocessor`` then ``AgeGenderCNN``, as trained.

    Raises
    ------
    ModelNotFoundError
        If the URI does not resolve in the tracking store in use (named in
        the message); a local store that does not exist is not created.
    """
    with _resolving(model_uri):
        model = mlflow.pyfunc.load_model(model_uri)
    return model.unwrap_python_model().pipeline_


def logged_metadata(model_uri: str) -> dict:
    """What the run that logged a model trained on, in the keys of ``skface train --save``'s metadata.

    Parameters
    ----------
    model_uri : str
        Any MLflow model URI, as in :func:`load_estimator`.

    Returns
    -------
    metadata : dict
        ``run_id``, ``configuration`` (None for none), ``data``,
        ``data_digest`` and ``extra_data`` from the run's params and tags,
        and ``seed`` and ``n_train`` when it logged them.

    Raises
    ------
    ModelNotFoundError
        As :func:`load_estimator`.
    """
    with _resolving(model_uri):
        run_id = mlflow.models.get_model_info(model_uri).run_id
        run = mlflow.MlflowClient().get_run(run_id)
    params, tags = run.data.params, run.data.tags
    config = params.get("config", "none")
    out = {"run_id": run_id, "configuration": None if config == "none" else config,
           "data": tags.get("skface.data_source"), "data_digest": tags.get("skface.data_digest"),
           "extra_data": [path for path in tags.get("skface.extra_data", "").split(",") if path]}
    out.update({key: int(params[name]) for key, name in (("seed", "random_state"), ("n_train", "n_train"))
                if name in params})
    return out


def download_model(model_uri: str, folder: str | Path) -> Path:
    """A local copy of a logged model's MLflow model folder.

    Parameters
    ----------
    model_uri : str
        Any MLflow model URI, as in :func:`load_estimator`, or the URI of
        the folder in an artifact store (``s3://...``).
    folder : str or path-like
        An existing folder to download into.

    Returns
    -------
    path : pathlib.Path
        The MLflow model folder (with its ``MLmodel`` file).

    Raises
    ------
    ModelNotFoundError
        As :func:`load_estimator`.
    """
    with _resolving(model_uri):
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(folder)))


@contextlib.contextmanager
def _resolving(model_uri: str):
    """Turn a model URI that does not resolve into a :class:`ModelNotFoundError` that names the store and the fix."""
    tracking_uri = mlflow.get_tracking_uri()
    where = (f"the tracking store {tracking_uri}" + ("" if os.environ.get("MLFLOW_TRACKING_URI")
                                                     else " (MLFLOW_TRACKING_URI is not set)"))
    fix = ("run from the folder that holds the store you trained with, or set MLFLOW_TRACKING_URI to it "
           "(e.g. sqlite:////path/to/mlflow.db or http://tracking-host:5000)")
    store = Path(tracking_uri[len("sqlite:///"):]) if tracking_uri.startswith("sqlite:///") else None
    if store is not None and not store.is_file() and model_uri.startswith(("models:/", "runs:/")):
        # Checked before MLflow opens the store, which would create an empty one as a side effect.
        raise ModelNotFoundError(f"cannot load {model_uri}: {where} does not exist; {fix}.")
    try:
        yield
    except (MlflowException, OSError) as exc:
        message = exc.message if isinstance(exc, MlflowException) else str(exc)
        raise ModelNotFoundError(f"cannot load {model_uri} from {where}: {message}; {fix}.") from None


def as_mlflow_model(model: str | Path | None, folder: str | Path) -> str:
    """A model as MLflow loads it: a URI or MLflow model folder as it is, a skface model written as one.

    The pretrained model and folders saved by :func:`skface.save_pretrained`
    are written with :func:`save_model`, so the MLflow model carries this
    skface's code; ``skface serve`` and :func:`skface.spark.score_images`
    take their ``--model`` / ``model_uri`` through here.

    Parameters
    ----------
    model : str, path-like or None
        None for the pretrained model shipped with the package; a folder
        saved by :func:`skface.save_pretrained` (``skface train --save``);
        an MLflow model folder; or an MLflow model URI
        (``models:/skface@champion``, ``runs:/<run_id>/model``, ``s3://...``).
    folder : str or path-like
        Where to write the MLflow model folder when one is needed; it must
        not exist yet.

    Returns
    -------
    uri : str
        ``model`` itself, or ``folder``.

    Raises
    ------
    ModelNotFoundError
        If ``model`` is none of these.
    """
    from ..network.persistence import load_pretrained

    if model is not None:
        path = Path(model)
        if (path / "MLmodel").is_file() or (":/" in str(model) and not path.exists()):
            return str(model)
        if not path.is_dir():
            raise ModelNotFoundError(
                f"{str(model)!r} is neither a saved model folder (skface train --save), an MLflow model folder "
                "nor an MLflow model URI (models:/NAME@ALIAS, runs:/RUN_ID/model)."
            )
    # A folder that is not a saved skface model fails here, with load_pretrained's message.
    return str(save_model(load_pretrained(model), folder))
