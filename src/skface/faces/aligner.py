"""From whole images to aligned face crops: :class:`FaceAligner` and :func:`find_faces`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from numbers import Real

import numpy as np
from PIL import Image
from sklearn.base import BaseEstimator, TransformerMixin

from ..data.imaging import MAX_PIXELS
from ..data.preprocessing import _as_items
from ..exceptions import ImageDecodeError
from .alignment import CROP_SIZE, align_face, template_offset
from .decoding import load_rgb
from .detector import Face, FaceDetector, _check_params

#: Default of ``FaceAligner(tight_crop_tolerance=...)``: ``|log scale|``,
#: rotation in degrees and shift in crop pixels under which a detected face
#: already sits where the template says, so the image is only resized (see
#: TEMPLATE.md, "Tight crops").
TIGHT_CROP_TOLERANCE = (0.15, 10.0, 12.0)

_ON_NO_FACE = ("raise", "keep")


class NoFaceError(ImageDecodeError):
    """No face was found in an image that must have one."""


@dataclass(frozen=True)
class AlignedFace(Face):
    """A :class:`Face` with its aligned crop.

    Attributes
    ----------
    crop : ndarray of shape (200, 200, 3), dtype uint8
        The face warped to the template of UTKFace crops.
    """

    crop: np.ndarray = field(default=None, repr=False)


def find_faces(image, *, detector: FaceDetector | None = None) -> list[AlignedFace]:
    """Every face of one image, with its box, confidence, landmarks and aligned crop.

    Parameters
    ----------
    image : str, os.PathLike, bytes, PIL.Image.Image or numpy.ndarray
        One image in any form that :class:`skface.ImagePreprocessor` takes.
    detector : FaceDetector, default=None
        The detector to use; None uses ``FaceDetector()``.

    Returns
    -------
    faces : list of AlignedFace
        Largest box first; empty if no face was found.

    Raises
    ------
    ImageDecodeError
        If the image cannot be read.

    Examples
    --------
    >>> from skface.faces import find_faces
    >>> faces = find_faces("group.jpg")  # doctest: +SKIP
    >>> [(face.box, face.crop.shape) for face in faces]  # doctest: +SKIP
    [((412.3, 96.0, 151.2, 188.7), (200, 200, 3)), ...]
    """
    rgb = load_rgb(image)
    faces = (detector or FaceDetector()).detect(rgb)
    return [AlignedFace(box=face.box, confidence=face.confidence, landmarks=face.landmarks,
                        crop=align_face(rgb, face.landmarks)) for face in faces]


class FaceAligner(TransformerMixin, BaseEstimator):
    """Turn images into the aligned 200x200 crop of each one's most prominent face.

    Each image is decoded at full resolution, its faces are found by
    :class:`FaceDetector`, and the largest is warped by a similarity
    transform of its five landmarks onto the template of UTKFace crops
    (:data:`skface.faces.TEMPLATE`). Put it before
    :class:`skface.ImagePreprocessor` so that the network sees faces laid out
    as in training.

    Parameters
    ----------
    min_face_size : float, default=0.1
        Smallest face looked for, as a fraction of the image's shorter side.
    detection_side : int or None, default=480
        Faces are searched on a copy of the image with at most this shorter
        side (boxes and crops use the full image). None searches at full
        resolution.
    tight_crop_tolerance : tuple of float or None, default=(0.15, 10.0, 12.0)
        ``(|log scale|, degrees, pixels)``: when the face of the image,
        resized to 200x200, is within these of the template in scale,
        rotation and shift, the image is resized rather than warped, which
        leaves tight face crops such as UTKFace's untouched. None always warps.
    on_no_face : {"raise", "keep"}, default="raise"
        What to do with an image where no face is found: raise
        :class:`NoFaceError` naming it, or keep the whole image, resized to
        200x200, for batch work.
    max_pixels : int or None, default=50_000_000
        Image files with more pixels are refused before decoding.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from skface import ImagePreprocessor, load_pretrained
    >>> from skface.faces import FaceAligner
    >>> model = load_pretrained().named_steps["model"]  # doctest: +SKIP
    >>> pipeline = make_pipeline(FaceAligner(), ImagePreprocessor(80, "rgb"), model)  # doctest: +SKIP
    >>> pipeline.predict(["portrait.jpg"])  # doctest: +SKIP
    array([[34.,  1.]])
    """

    def __init__(self, min_face_size: float = 0.1, detection_side: int | None = 480,
                 tight_crop_tolerance: tuple[float, float, float] | None = TIGHT_CROP_TOLERANCE,
                 on_no_face: str = "raise", max_pixels: int | None = MAX_PIXELS):
        self.min_face_size = min_face_size
        self.detection_side = detection_side
        self.tight_crop_tolerance = tight_crop_tolerance
        self.on_no_face = on_no_face
        self.max_pixels = max_pixels

    def fit(self, X=None, y=None):
        """Check the parameters; there is nothing to learn.

        Parameters
        ----------
        X : ignored
        y : ignored

        Returns
        -------
        self : FaceAligner
        """
        self._check_params()
        return self

    def transform(self, X) -> np.ndarray:
        """Align the most prominent face of every image of ``X``.

        Parameters
        ----------
        X : sequence or ndarray
            File paths, encoded image bytes, PIL images or arrays, as
            :class:`skface.ImagePreprocessor` takes them.

        Returns
        -------
        crops : ndarray of shape (n, 200, 200, 3), dtype uint8

        Raises
        ------
        ImageDecodeError
            If an item cannot be read; the message names its index.
        NoFaceError
            If no face is found in an item and ``on_no_face="raise"``.
        """
        detector = self._check_params()
        items = _as_items(X)
        out = np.empty((len(items), CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
        for index, item in enumerate(items):
            name = f" ({os.fspath(item)!r})" if isinstance(item, (str, os.PathLike)) else ""
            try:
                image = load_rgb(item, max_pixels=self.max_pixels)
            except ImageDecodeError as exc:
                raise ImageDecodeError(f"item {index}{name}: {exc}") from exc
            faces = detector.detect(image)
            if not faces:
                if self.on_no_face == "raise":
                    raise NoFaceError(
                        f"item {index}{name}: no face found in this {image.shape[1]}x{image.shape[0]} image; "
                        "pass an image with a face at least min_face_size of its shorter side, lower "
                        "min_face_size, or set on_no_face='keep' to pass such images through whole."
                    )
                out[index] = _resized(image)
            elif self._is_tight(faces[0], image.shape[:2]):
                out[index] = _resized(image)
            else:
                out[index] = align_face(image, faces[0].landmarks)
        return out

    def _is_tight(self, face: Face, shape) -> bool:
        if self.tight_crop_tolerance is None:
            return False
        offsets = template_offset(face.landmarks, shape)
        return all(offset <= limit for offset, limit in zip(offsets, self.tight_crop_tolerance))

    def _check_params(self) -> FaceDetector:
        if self.on_no_face not in _ON_NO_FACE:
            raise ValueError(f"on_no_face must be 'raise' or 'keep', got {self.on_no_face!r}.")
        tolerance = self.tight_crop_tolerance
        if tolerance is not None and (
                not isinstance(tolerance, (tuple, list)) or len(tolerance) != 3
                or not all(isinstance(t, Real) and not isinstance(t, bool) and t >= 0 for t in tolerance)):
            raise ValueError(
                "tight_crop_tolerance must be None or three non-negative numbers (|log scale|, degrees, "
                f"pixels), e.g. {TIGHT_CROP_TOLERANCE}, got {tolerance!r}."
            )
        detector = FaceDetector(min_face_size=self.min_face_size, detection_side=self.detection_side)
        _check_params(detector)
        return detector

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags


def _resized(image: np.ndarray) -> np.ndarray:
    if image.shape[:2] == (CROP_SIZE, CROP_SIZE):
        return image
    return np.asarray(Image.fromarray(image).resize((CROP_SIZE, CROP_SIZE), Image.Resampling.BILINEAR))
