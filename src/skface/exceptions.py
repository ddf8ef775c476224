"""Exceptions raised by skface."""

from sklearn.exceptions import NotFittedError


class SkfaceError(Exception):
    """Base class of every error that skface raises on purpose."""


class ImageDecodeError(SkfaceError, ValueError):
    """An image could not be read, decoded or converted.

    The message names the item (its index or file name), the reason, and what
    to change.
    """


class UTKFaceError(SkfaceError, ValueError):
    """A UTKFace folder or archive cannot be loaded at all."""


class NotFittedEstimatorError(SkfaceError, NotFittedError):
    """An estimator was used before ``fit``; subclasses scikit-learn's ``NotFittedError``."""


class PretrainedModelError(SkfaceError, FileNotFoundError):
    """The pretrained model is missing or incomplete."""


class ModelNotFoundError(SkfaceError, LookupError):
    """An MLflow model URI does not resolve in the tracking store in use."""


class SparkUnavailableError(SkfaceError, ImportError):
    """Spark cannot start here: pyspark is not installed, or no Java runtime (17 or newer) is found."""


class ImageSourceError(SkfaceError, FileNotFoundError):
    """A folder, glob or URI that should hold images to score matches no file."""
