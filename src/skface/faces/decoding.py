"""Decoding one image at full resolution, for face detection and alignment."""

from __future__ import annotations

import numpy as np

from ..data.imaging import MAX_PIXELS, load_image


def load_rgb(source, *, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Decode one image to a full-resolution RGB array.

    The same steps as :func:`skface.data.imaging.decode_image` (EXIF rotation,
    alpha composited on white, 16-bit and palette modes, the pixel limit),
    without the final resize.

    Parameters
    ----------
    source : str, os.PathLike, bytes, PIL.Image.Image or numpy.ndarray
        A file path, encoded image bytes, a PIL image, or an array of shape
        ``(h, w)`` or ``(h, w, 1|3|4)`` on the 0-255 scale.
    max_pixels : int or None, default=MAX_PIXELS
        Files with more pixels are refused before decoding. ``None`` lifts
        the limit.

    Returns
    -------
    image : ndarray of shape (h, w, 3), dtype uint8

    Raises
    ------
    ImageDecodeError
        If the source is not a readable image; the message says why.
    """
    if isinstance(source, np.ndarray) and source.dtype == np.uint8 and source.ndim == 3 and source.shape[2] == 3:
        return source
    return np.asarray(load_image(source, "rgb", max_pixels=max_pixels), dtype=np.uint8)
