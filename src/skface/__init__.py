"""skface: age and gender from face images, the scikit-learn way.

The public surface:

- :class:`AgeGenderCNN`: the two-output CNN as a scikit-learn estimator.
- :class:`ImagePreprocessor`: files, bytes, PIL images or arrays to image batches.
- :func:`load_utkface`: the UTKFace data set from a folder or archive.
- :func:`make_synthetic_faces`: generated faces, the embedded default data.
- :func:`load_pretrained` / :func:`save_pretrained`: fitted pipelines without pickle.
- :func:`predict_faces`: every face of a photo with its box, landmarks, crop, age and gender.
- :mod:`skface.metrics`: age and gender metrics and scorers.
"""

__version__ = "0.1.0"

from . import metrics  # noqa: E402
from .data.preprocessing import ImagePreprocessor
from .data.synthetic import make_synthetic_faces, write_synthetic_utkface
from .data.utkface import CacheWarning, SkippedFilesWarning, load_utkface
from .exceptions import (
    ImageDecodeError,
    ImageSourceError,
    ModelNotFoundError,
    NotFittedEstimatorError,
    PretrainedModelError,
    SkfaceError,
    SparkUnavailableError,
    UTKFaceError,
)
from .network.estimator import AgeGenderCNN
from .network.persistence import load_pretrained, save_pretrained
from .network.pipeline import predict_faces

__all__ = [
    "AgeGenderCNN",
    "CacheWarning",
    "ImageDecodeError",
    "ImagePreprocessor",
    "ImageSourceError",
    "ModelNotFoundError",
    "NotFittedEstimatorError",
    "PretrainedModelError",
    "SkfaceError",
    "SkippedFilesWarning",
    "SparkUnavailableError",
    "UTKFaceError",
    "load_pretrained",
    "load_utkface",
    "make_synthetic_faces",
    "metrics",
    "predict_faces",
    "save_pretrained",
    "write_synthetic_utkface",
    "__version__",
]
