"""Image preprocessing as a scikit-learn transformer."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image
from sklearn.base import BaseEstimator, TransformerMixin

from ..exceptions import ImageDecodeError
from .imaging import MAX_PIXELS, check_image_params, decode_image, n_channels


class ImagePreprocessor(TransformerMixin, BaseEstimator):
    """Turn images in any common form into an ``(n, h, w, c)`` uint8 batch.

    Each item is decoded, rotated as its EXIF orientation says, converted
    from its mode (L, RGB, RGBA and P composited on white, CMYK, 16-bit, ...)
    to grayscale or RGB, and resized to a square. The UTKFace loader and the
    served model use the very same steps, so training and prediction see the
    same pixels.

    Parameters
    ----------
    image_size : int, default=64
        Side of the square output images in pixels.
    color : {"grayscale", "rgb"}, default="grayscale"
        Output colour: one channel or three.
    max_pixels : int or None, default=50_000_000
        Image files with more pixels are refused before decoding, as a guard
        against decompression bombs. ``None`` lifts the limit.

    Attributes
    ----------
    n_features_in_ : int
        Not set: the input is a sequence of images, not a feature table.

    Examples
    --------
    >>> import numpy as np
    >>> from skface import ImagePreprocessor
    >>> images = [np.zeros((120, 90, 3), dtype=np.uint8), np.full((50, 50), 200, dtype=np.uint8)]
    >>> ImagePreprocessor(image_size=32).fit_transform(images).shape
    (2, 32, 32, 1)
    """

    def __init__(self, image_size: int = 64, color: str = "grayscale", max_pixels: int | None = MAX_PIXELS):
        self.image_size = image_size
        self.color = color
        self.max_pixels = max_pixels

    def fit(self, X=None, y=None):
        """Check the parameters; there is nothing to learn.

        Parameters
        ----------
        X : ignored
        y : ignored

        Returns
        -------
        self : ImagePreprocessor
        """
        check_image_params(self.image_size, self.color)
        return self

    def transform(self, X) -> np.ndarray:
        """Decode and resize every image of ``X``.

        Parameters
        ----------
        X : sequence or ndarray
            File paths (str or path-like), encoded image bytes, PIL images,
            or arrays: a 4-D batch ``(n, h, w, c)``, a 3-D batch of grayscale
            images ``(n, h, w)``, or a list of 2-D/3-D images. A single path
            or bytes object is refused: wrap it in a list.

        Returns
        -------
        images : ndarray of shape (n, image_size, image_size, c), dtype uint8

        Raises
        ------
        ImageDecodeError
            If an item cannot be read; the message names its index.
        """
        image_size, color = check_image_params(self.image_size, self.color)
        items = image_items(X)
        out = np.empty((len(items), image_size, image_size, n_channels(color)), dtype=np.uint8)
        for index, item in enumerate(items):
            try:
                out[index] = decode_image(item, image_size, color, max_pixels=self.max_pixels)
            except ImageDecodeError as exc:
                name = f" ({os.fspath(item)!r})" if isinstance(item, (str, os.PathLike)) else ""
                raise ImageDecodeError(f"item {index}{name}: {exc}") from exc
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags


def image_items(X) -> list:
    """``X`` as a list of single images, as :meth:`ImagePreprocessor.transform` reads it; a clear error otherwise."""
    if isinstance(X, (str, bytes, bytearray, os.PathLike, Image.Image)):
        raise ImageDecodeError(
            f"expected a sequence of images, got a single {type(X).__name__}; "
            "wrap it in a list: transform([image])."
        )
    if isinstance(X, np.ndarray):
        if X.dtype == object or X.ndim == 1:
            return list(X)
        if X.ndim in (3, 4):
            return list(X)
        raise ImageDecodeError(
            f"an image batch array must be 3-D (n, h, w) or 4-D (n, h, w, c), got shape "
            f"{X.shape}; for one image, wrap it in a list: transform([image])."
        )
    if hasattr(X, "iloc"):  # a pandas Series or one-column DataFrame
        values = X.to_numpy()
        if values.ndim == 2:
            if values.shape[1] != 1:
                raise ImageDecodeError(
                    f"a DataFrame input must have exactly one column of images, got "
                    f"{values.shape[1]} columns."
                )
            values = values[:, 0]
        return list(values)
    try:
        return list(X)
    except TypeError:
        raise ImageDecodeError(
            f"expected a sequence of images (paths, bytes, PIL images or arrays), got "
            f"{type(X).__name__}."
        ) from None
