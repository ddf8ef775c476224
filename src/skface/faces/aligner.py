"""From whole images to aligned face crops: :class:`FaceAligner`, :func:`find_faces` and :func:`aligned_views`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ..data.imaging import MAX_PIXELS, n_channels
from ..data.preprocessing import ImagePreprocessor, image_items
from ..exceptions import ImageDecodeError
from .alignment import align_face, template_offset
from .decoding import load_rgb
from .detector import Face, FaceDetector, _check_params

#: Default of ``FaceAligner(tight_crop_tolerance=...)``: ``|log scale|``,
#: rotation in degrees and shift in crop pixels under which a detected face
#: already sits where the template says, so the image is only resized (see
#: TEMPLATE.md, "Tight crops").
TIGHT_CROP_TOLERANCE = (0.15, 10.0, 12.0)

_ON_NO_FACE = ("keep_crops", "raise", "keep")
#: Under ``on_no_face="keep_crops"``, an image with no face found is taken for a tight face crop, and kept,
#: when it is square (sides within 5%) and at most this many pixels on a side: UTKFace crops are 200 px,
#: and the detector misses about 1% of them (mostly babies); photos are neither square nor that small.
CROP_LIKE_SIDE = 256


class NoFaceError(ImageDecodeError):
    """No face was found in an image that must have one."""


@dataclass(frozen=True)
class AlignedFace(Face):
    """A :class:`Face` with the crop that the network should see.

    Attributes
    ----------
    crop : ndarray of shape (h, w, 3), dtype uint8
        The face warped to the template of UTKFace crops (200x200), or the
        whole image where it already is a tight crop. For an image that
        :class:`FaceAligner` keeps although no face was found, the box is the
        whole image and ``confidence`` and ``landmarks`` are None.
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


def aligned_views(images, *, image_size: int, color: str, verbose: bool = False) -> np.ndarray:
    """Each face image as the face step hands a photo's face to the network: found, warped, resized.

    The network answers two kinds of input: tight crops, which
    :class:`FaceAligner` keeps in their own alignment, and the faces of
    photos, which it warps onto :data:`skface.faces.TEMPLATE`. Training on
    both views of each face (``train_test_data(second_view=aligned_views)``,
    ``skface train --aligned-views``) teaches the network the second kind
    too, instead of only the crops' own layout.

    Parameters
    ----------
    images : sequence of ndarray of shape (h, w, 3), dtype uint8
        RGB face crops at full resolution (UTKFace's are 200x200), as
        ``load_utkface(..., image_size=200, color="rgb")`` gives them.
    image_size : int
        Side of the network's input.
    color : {"grayscale", "rgb"}
        Colour of the network's input.
    verbose : bool, default=False
        A progress bar (about 12 ms a face on a 2-core CPU).

    Returns
    -------
    views : ndarray of shape (n, image_size, image_size, c), dtype uint8
        Each image's largest face warped onto the template, then resized as
        :class:`skface.ImagePreprocessor` resizes; an image where no face
        is found (about 1% of UTKFace crops, mostly babies) resized whole,
        as ``FaceAligner(on_no_face="keep")`` answers it.
    """
    from tqdm.auto import tqdm

    aligner = FaceAligner(tight_crop_tolerance=None, on_no_face="keep")
    detector = aligner._check_params()
    preprocess = ImagePreprocessor(image_size=image_size, color=color)
    views = np.empty((len(images), image_size, image_size, n_channels(color)), dtype=np.uint8)
    progress = tqdm(images, desc="Aligning faces", unit="face", disable=not verbose, mininterval=1.0)
    for index, image in enumerate(progress):
        try:
            face = aligner._faces(image, detector)[0].crop
        except NoFaceError:  # faces found, none of which a similarity can place
            face = image
        views[index] = preprocess.transform([face])[0]
    return views


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
    min_face_pixels : int or None, default=None
        Also look for faces down to this many pixels when ``min_face_size``
        of the shorter side is more (see :class:`FaceDetector`): 40 for group
        photos, at some cost in time.
    detection_side : int or None, default=480
        Faces are searched on a copy of the image with at most this shorter
        side (boxes and crops use the full image). None searches at full
        resolution.
    tight_crop_tolerance : tuple of float or None, default=(0.15, 10.0, 12.0)
        ``(|log scale|, degrees, pixels)``: when the face of the image,
        resized to 200x200, is within these of the template in scale,
        rotation and shift, the image is kept as it is rather than warped, which
        leaves tight face crops such as UTKFace's untouched. None always warps.
    on_no_face : {"keep_crops", "raise", "keep"}, default="keep_crops"
        What to do with an image where no face is found. ``"keep_crops"``:
        keep it whole when it looks like a tight face crop (square, at most
        :data:`CROP_LIKE_SIDE` pixels a side: the detector misses about 1% of
        UTKFace crops, mostly babies), else raise :class:`NoFaceError` naming
        it. ``"raise"``: always raise. ``"keep"``: always keep the whole
        image, for batch work that must answer every image.
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
                 on_no_face: str = "keep_crops", max_pixels: int | None = MAX_PIXELS,
                 min_face_pixels: int | None = None):
        self.min_face_size = min_face_size
        self.min_face_pixels = min_face_pixels
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

    def transform(self, X) -> list[np.ndarray]:
        """The face that the network should see in each image of ``X``: its most prominent one.

        Parameters
        ----------
        X : sequence or ndarray
            File paths, encoded image bytes, PIL images or arrays, as
            :class:`skface.ImagePreprocessor` takes them.

        Returns
        -------
        faces : list of ndarray of shape (h, w, 3), dtype uint8
            One RGB image per item: the aligned 200x200 crop of its largest
            face, or the image itself where it already is a tight crop (see
            ``tight_crop_tolerance`` and ``on_no_face``). A list, since kept
            images keep their size; :class:`skface.ImagePreprocessor` takes it.

        Raises
        ------
        ImageDecodeError
            If an item cannot be read; the message names its index.
        NoFaceError
            If no face is found in an item that ``on_no_face`` does not keep.
        """
        detector = self._check_params()
        out = []
        for index, item in enumerate(image_items(X)):
            try:
                out.append(self._faces(item, detector)[0].crop)
            except ImageDecodeError as exc:
                name = f" ({os.fspath(item)!r})" if isinstance(item, (str, os.PathLike)) else ""
                raise type(exc)(f"item {index}{name}: {exc}") from exc
        return out

    def find(self, image) -> list[AlignedFace]:
        """Every face of one image, each with the crop that the network should see.

        The largest face comes first, with the same crop that
        :meth:`transform` gives; the others are aligned to the template.

        Parameters
        ----------
        image : str, os.PathLike, bytes, PIL.Image.Image or numpy.ndarray
            One image in any form that :class:`skface.ImagePreprocessor` takes.

        Returns
        -------
        faces : list of AlignedFace
            At least one: an image that ``on_no_face`` keeps is one face
            whose box is the whole image, with confidence and landmarks None.

        Raises
        ------
        ImageDecodeError
            If the image cannot be read.
        NoFaceError
            If no face is found and ``on_no_face`` does not keep the image.
        """
        return self._faces(image, self._check_params())

    def _faces(self, item, detector: FaceDetector) -> list[AlignedFace]:
        image = load_rgb(item, max_pixels=self.max_pixels)
        height, width = image.shape[:2]
        faces = detector.detect(image)
        if not faces:
            crop_like = max(height, width) <= CROP_LIKE_SIDE and abs(height - width) <= 0.05 * max(height, width)
            if self.on_no_face == "keep" or (self.on_no_face == "keep_crops" and crop_like):
                return [AlignedFace(box=(0.0, 0.0, float(width), float(height)), confidence=None, landmarks=None,
                                    crop=image)]
            raise NoFaceError(
                f"no face found in this {width}x{height} image; pass an image with a face at least "
                f"min_face_size={self.min_face_size} of its shorter side, lower min_face_size or set "
                "min_face_pixels (e.g. 40) for small faces, or set "
                "on_no_face='keep' to pass such images through whole."
            )
        aligned = []
        for face in faces:
            try:
                crop = image if not aligned and self._is_tight(face, (height, width)) else align_face(image,
                                                                                                     face.landmarks)
            except ValueError:
                continue  # landmarks that coincide: no face a similarity can place, so none to answer
            aligned.append(AlignedFace(box=face.box, confidence=face.confidence, landmarks=face.landmarks,
                                       crop=crop))
        if not aligned:
            raise NoFaceError(f"no face that can be aligned was found in this {width}x{height} image.")
        return aligned

    def _is_tight(self, face: Face, shape) -> bool:
        if self.tight_crop_tolerance is None:
            return False
        offsets = template_offset(face.landmarks, shape)
        return all(offset <= limit for offset, limit in zip(offsets, self.tight_crop_tolerance))

    def _check_params(self) -> FaceDetector:
        if self.on_no_face not in _ON_NO_FACE:
            raise ValueError(f"on_no_face must be one of {', '.join(map(repr, _ON_NO_FACE))}, got {self.on_no_face!r}.")
        tolerance = self.tight_crop_tolerance
        if tolerance is not None and (
                not isinstance(tolerance, (tuple, list)) or len(tolerance) != 3
                or not all(isinstance(t, Real) and not isinstance(t, bool) and t >= 0 for t in tolerance)):
            raise ValueError(
                "tight_crop_tolerance must be None or three non-negative numbers (|log scale|, degrees, "
                f"pixels), e.g. {TIGHT_CROP_TOLERANCE}, got {tolerance!r}."
            )
        detector = FaceDetector(min_face_size=self.min_face_size, detection_side=self.detection_side,
                                min_face_pixels=self.min_face_pixels)
        _check_params(detector)
        return detector

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags
