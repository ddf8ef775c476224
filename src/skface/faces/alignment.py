"""Warping a face to the geometry of a UTKFace crop, from its five landmarks.

The template
------------
:data:`TEMPLATE` holds where the five landmarks of :mod:`skface.faces.detector`
sit, on median, in a 200x200 UTKFace crop. See ``TEMPLATE.md`` beside this
module for the procedure and the figures; ``python experiments/bench_faces.py
template`` reproduces them.

The warp
--------
:func:`similarity_transform` fits rotation, uniform scale and translation
from the face's landmarks to the template by least squares (Umeyama, 1991);
:func:`align_face` resamples the image through it with PIL (bilinear) into a
200x200 crop, which then goes through :class:`skface.ImagePreprocessor`'s
resize exactly like the training images.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..data.utkface import CROP_SIZE  # the frame of TEMPLATE, in pixels

#: Median position ``(x, y)`` of the left eye, right eye, nose, left and right
#: mouth corners in 200x200 UTKFace crops (pixel centres at integers), measured
#: by :class:`skface.faces.FaceDetector` on 2,000 training crops of crop_part1.
TEMPLATE = np.array([
    [58.95, 58.11],
    [136.61, 58.30],
    [97.26, 103.18],
    [62.54, 136.05],
    [132.47, 136.34],
])


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform from ``source`` points to ``target`` points.

    Parameters
    ----------
    source, target : ndarray of shape (n, 2)
        Corresponding ``(x, y)`` points, ``n >= 2``.

    Returns
    -------
    matrix : ndarray of shape (2, 3)
        ``[[a, -b, tx], [b, a, ty]]`` such that ``target ~ matrix @ [x, y, 1]``.

    Raises
    ------
    ValueError
        If the shapes differ or the source points all coincide.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2 or len(source) < 2:
        raise ValueError(
            f"source and target must both be (n, 2) arrays of corresponding points with n >= 2, "
            f"got shapes {source.shape} and {target.shape}."
        )
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    variance = (source_centred ** 2).sum() / len(source)
    if variance == 0:
        raise ValueError("the source points all coincide; a similarity transform needs two distinct points.")
    covariance = target_centred.T @ source_centred / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rotation = u @ np.diag(sign) @ vt
    scale = (singular * sign).sum() / variance
    translation = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, translation[:, None]])


def align_face(image: np.ndarray, landmarks: np.ndarray, *, size: int = CROP_SIZE) -> np.ndarray:
    """Warp the face with these landmarks into a crop laid out like a UTKFace crop.

    Parameters
    ----------
    image : ndarray of shape (h, w, 3), dtype uint8
        The full image.
    landmarks : ndarray of shape (5, 2)
        The face's five landmarks in ``image``'s pixels, in the order of
        :data:`skface.faces.LANDMARK_NAMES`.
    size : int, default=200
        Side of the output crop; the template is scaled from 200 pixels.

    Returns
    -------
    crop : ndarray of shape (size, size, 3), dtype uint8
        Pixels that fall outside the image are black, as in UTKFace crops
        of faces near an edge.
    """
    template = TEMPLATE * (size / CROP_SIZE)
    # PIL samples pixel centres at half-integers; the landmarks have them at integers.
    matrix = similarity_transform(np.asarray(landmarks) + 0.5, template + 0.5)
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    warped = Image.fromarray(image).transform((size, size), Image.Transform.AFFINE,
                                              tuple(inverse.ravel()), Image.Resampling.BILINEAR)
    return np.asarray(warped)


def template_offset(landmarks: np.ndarray, shape: tuple[int, int]) -> tuple[float, float, float]:
    """How far a plain resize to 200x200 leaves the face from the template.

    Parameters
    ----------
    landmarks : ndarray of shape (5, 2)
        The face's landmarks in the image's pixels.
    shape : tuple of int
        ``(height, width)`` of the image.

    Returns
    -------
    scale_change, rotation, shift : float
        Of the similarity from the resized landmarks to the template:
        ``|log(scale)|``, the rotation's absolute angle in degrees, and the
        distance in crop pixels that it moves the template's centre.
    """
    height, width = shape
    resized = (np.asarray(landmarks) + 0.5) * [CROP_SIZE / width, CROP_SIZE / height] - 0.5
    matrix = similarity_transform(resized, TEMPLATE)
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    angle = float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))
    centre = TEMPLATE.mean(axis=0)
    moved = matrix[:, :2] @ centre + matrix[:, 2]
    return abs(np.log(scale)), abs(angle), float(np.hypot(*(moved - centre)))
